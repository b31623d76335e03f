package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/proglog/proglog/client"
	logv1 "github.com/proglog/proglog/gen/log/v1"
)

func newStatsCmd(e *env) *cobra.Command {
	return newUnaryCmd(e, "stats", "Show the log's bounds, size and segments as the node at --addr has them",
		func(ctx context.Context, c *client.Client, addr string) (string, error) {
			st, err := c.ServerStats(ctx, addr)
			if err != nil {
				return "", err
			}
			return formatStats(st), nil
		})
}

// newUnaryCmd is a command without arguments that makes one call and prints
// what format returns; addr is --addr.
func newUnaryCmd(e *env, use, short string, call func(ctx context.Context, c *client.Client, addr string) (string, error)) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  wantNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.dial(cmd.Context(), oneShotRetry)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := unaryContext(cmd.Context(), cf.timeout)
			defer cancel()
			out, err := call(ctx, c, cf.addr)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(e.stdout, out)
			return err
		},
	}
	cf.register(cmd.Flags(), e)
	return cmd
}

func formatStats(st *logv1.GetStatsResponse) string {
	var b strings.Builder
	records := uint64(0)
	if st.GetNextOffset() > st.GetLowestOffset() {
		records = st.GetNextOffset() - st.GetLowestOffset()
	}
	fmt.Fprintf(&b, "node:     %s\n", st.GetNodeId())
	fmt.Fprintf(&b, "version:  %s\n", st.GetVersion())
	fmt.Fprintf(&b, "lowest:   %d\n", st.GetLowestOffset())
	fmt.Fprintf(&b, "next:     %d\n", st.GetNextOffset())
	fmt.Fprintf(&b, "records:  %d\n", records)
	fmt.Fprintf(&b, "size:     %s (%d bytes)\n", humanBytes(int64(min(st.GetSizeBytes(), 1<<62))), st.GetSizeBytes())
	fmt.Fprintf(&b, "segments: %d\n", st.GetSegments())
	return b.String()
}

func newWhoAmICmd(e *env) *cobra.Command {
	return newUnaryCmd(e, "whoami", "Show who the server thinks you are and what the ACL lets you do",
		func(ctx context.Context, c *client.Client, _ string) (string, error) {
			resp, err := c.WhoAmI(ctx)
			if err != nil {
				return "", err
			}
			return formatWhoAmI(resp), nil
		})
}

func formatWhoAmI(r *logv1.WhoAmIResponse) string {
	actions := strings.Join(r.GetActions(), ", ")
	if actions == "" {
		actions = "(none)"
	}
	return fmt.Sprintf("subject:       %s\nauthenticated: %t\nactions:       %s\n", r.GetSubject(), r.GetAuthenticated(), actions)
}
