package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/proglog/proglog/client"
)

func newNodesCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the cluster's nodes, or remove one that is down for good",
		Long: `List the cluster's nodes, or remove one that is down for good.

A node that stops (SIGINT/SIGTERM, or a crash) stays a member: it keeps its
vote and rejoins when it starts again, so a rolling restart never changes
the voter set. A node that will not come back holds one vote that cannot be
cast until it is removed: by "nodes remove", or by the leader on its own
once it has been unreachable for --reap-failed-after. To take a running node
out, stop it with serve --leave-on-terminate (or stop it, then remove it).` + "\n" + exitCodesHelp,
	}
	cmd.AddCommand(newNodesListCmd(e), newNodesRemoveCmd(e))
	return cmd
}

func newNodesListCmd(e *env) *cobra.Command {
	return newUnaryCmd(e, "list", "List the cluster's nodes: ID, address, which leads the system group, partitions led",
		func(ctx context.Context, c *client.Client, _ string) (string, error) {
			servers, err := c.Servers(ctx)
			if err != nil {
				return "", err
			}
			var b strings.Builder
			w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NODE\tADDRESS\tSYSTEM LEADER\tPARTITIONS LED")
			for _, s := range servers {
				leader := ""
				if s.GetIsLeader() {
					leader = "yes"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", s.GetId(), s.GetRpcAddr(), leader, s.GetPartitionLeaders())
			}
			w.Flush()
			return b.String(), nil
		})
}

func newNodesRemoveCmd(e *env) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "remove NODE",
		Short: "Remove a node that is down from the cluster (Raft's voters and gossip)",
		Long: `Remove a node that is down for good from the cluster: the leader takes it
out of Raft's voters and out of gossip, so the others stop counting on its
vote. Refused (exit 1) while the node is alive (stop it first), and when the
voters that would remain have no live majority. Partitions the catalogue
still places on the node keep their other replicas; the command lists them:
move each to a live node with "topics move". A removed node that starts
again joins like a new one. Removing a node that is already out succeeds.
Needs the admin action on every topic ("*").` + "\n" + exitCodesHelp,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || args[0] == "" {
				return fmt.Errorf("%s takes one argument, the node's ID (as nodes list shows it)", cmd.CommandPath())
			}
			return nil
		},
	}
	return topicCmd(e, cmd, &cf, nil, func(ctx context.Context, c *client.Client, args []string) (string, error) {
		stranded, err := c.RemoveNode(ctx, args[0])
		if err != nil {
			return "", err
		}
		out := fmt.Sprintf("removed node %s\n", args[0])
		if len(stranded) > 0 {
			out += fmt.Sprintf("partitions still placed on it (move them with topics move NAME --partition P --from %s --to NODE): %s\n",
				args[0], strings.Join(stranded, " "))
		}
		return out, nil
	})
}
