package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/oklog/run"
)

// Run serves until ctx ends or a part fails, then stops every part and
// returns once all of them have stopped. Each long-lived part is an actor
// of one run.Group; the group interrupts them in the order they are added
// below, which is the shutdown order:
//
//  1. stop: ends when ctx does. That is a graceful stop: Run returns nil
//     (or the server's shutdown error); any other first end is a failure,
//     which Run returns.
//  2. server: catches a one-member cluster up with its Raft log, then
//     serves the port (HTTP/2, and Raft's connections by ALPN). Stopping
//     marks the health check NOT_SERVING and shuts the server down: live
//     tails end, produces under way get up to ShutdownTimeout.
//  3. acl: reloads the policy file when it changes.
//  4. certs: reloads the server certificate, its key and the CA file when
//     they change (pki.Reloader, every TLSPoll): new handshakes, the
//     port's and this node's dials to its peers, take the new material;
//     open connections (streams, Raft's) keep theirs.
//  5. health: keeps the health check's proglog.Writes in step with whether
//     the log takes writes (disk full, apply failed), and, once the port
//     serves, proglog.Ready with whether the node serves the system group
//     and every partition placed on it (a leader heard from, caught up).
//  6. partitions: starts and stops the Raft groups of the partitions the
//     catalogue places on this node (topics.Manager). Stopping hands over
//     the leadership of those it leads and closes them.
//  7. raft: the system group. Stopping hands leadership over (on a
//     graceful stop, to another voter, if this node leads), then closes
//     forwarding and Raft once gossip has stopped: gossip's events call
//     into the log.
//  8. gossip: joins the cluster once the port serves, then runs Serf.
//     Stopping just stops, so the node stays a voter and rejoins when it
//     starts again (a rolling restart never changes the voter set); with
//     ClusterConfig.LeaveOnTerminate a graceful stop leaves the cluster
//     (the new leader removes this node from Raft).
//
// Once every actor has stopped, Run flushes the spans not yet exported
// and stops tracing (Config.Tracing).
//
// Without TLS there is no certs, health, raft or gossip actor (no Raft); a
// store actor closes the standalone log in their place. Without a gossip
// key there is no gossip actor.
//
// A first start whose join fails leaves no Raft state behind, so the next
// start is a first start too. Run may be called once.
func (n *Node) Run(ctx context.Context) error {
	if !n.ran.CompareAndSwap(false, true) {
		return errors.New("node: Run called twice")
	}
	var (
		g           run.Group
		accepting   = make(chan struct{}) // the server is about to serve: gossip may join
		shutdownErr error                 // the server's, set by its interrupt
		joinErr     error                 // gossip's, set before its execute returns
	)

	stop := make(chan struct{})
	g.Add(func() error {
		select {
		case <-ctx.Done():
			return errStopped
		case <-stop:
			return nil
		}
	}, func(error) { close(stop) })

	upCtx, cancelUp := context.WithCancel(ctx)
	defer cancelUp()
	g.Add(func() error {
		if n.member != nil {
			n.member.catchUp(upCtx)
		}
		if upCtx.Err() == nil {
			close(accepting)
			if n.member == nil || !n.member.cfg.gossip() {
				n.logServing()
			}
			if n.member == nil {
				n.svc.SetReady(true) // a standalone node serves all it has once it serves
			}
		}
		// After an interrupt Serve returns at once, closing the listener.
		if err := n.srv.Serve(n.ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	}, func(cause error) {
		cancelUp()
		if errors.Is(cause, errStopped) {
			n.logger.Info("shutting down")
		}
		n.svc.SetServing(false)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.ShutdownTimeout)
		defer cancel()
		shutdownErr = n.srv.Shutdown(sctx)
	})

	g.Add(loop(ctx, "the ACL watcher", func(ctx context.Context) { n.policy.Run(ctx, n.cfg.ACLPoll) }))
	if n.certs != nil {
		g.Add(loop(ctx, "the certificate watcher", func(ctx context.Context) { n.certs.Run(ctx, n.cfg.TLSPoll) }))
	}

	if m := n.member; m != nil {
		g.Add(loop(ctx, "the health reporter", func(ctx context.Context) { m.reportHealth(ctx, n.svc, accepting) }))

		partitionsDone := make(chan struct{})
		run, stopPartitions := loop(ctx, "the partitions", m.topics.Run)
		g.Add(func() error {
			defer close(partitionsDone)
			return run()
		}, stopPartitions)

		gossipDone := make(chan struct{})
		stopRaft := make(chan struct{})
		g.Add(func() error {
			<-stopRaft
			<-gossipDone
			<-partitionsDone // their groups run on the stream layer the system group closes
			m.close()
			return nil
		}, func(cause error) {
			if errors.Is(cause, errStopped) {
				m.handOver()
			}
			close(stopRaft)
		})

		if !m.cfg.gossip() {
			close(gossipDone)
		} else {
			stopGossip := make(chan struct{})
			var graceful bool // set by the interrupt before stopGossip closes
			g.Add(func() error {
				defer close(gossipDone)
				select {
				case <-accepting:
				case <-stopGossip:
					return nil
				}
				select {
				case <-stopGossip: // the server failed as it started
					return nil
				default:
				}
				if joinErr = m.join(); joinErr != nil {
					return joinErr
				}
				n.logger.Info("cluster member", "advertise", m.advertise, "gossip", m.cfg.GossipAddr, "join", m.cfg.Join)
				n.logServing()
				<-stopGossip
				m.leave(graceful && m.cfg.LeaveOnTerminate)
				return nil
			}, func(cause error) {
				graceful = errors.Is(cause, errStopped)
				close(stopGossip)
			})
		}
	} else {
		stopStore := make(chan struct{})
		g.Add(func() error {
			<-stopStore
			n.closeStore()
			return nil
		}, func(error) { close(stopStore) })
	}

	err := g.Run()
	// Last: the spans of everything that stopped above get exported.
	n.shutdownTracing()
	if joinErr != nil && !n.member.restarted && len(n.member.cfg.Join) > 0 {
		// Nobody knows this node yet and Raft holds no state: leave the
		// dir as it was, so the next start is a first start too.
		n.member.removeRaftDir()
	}
	if !errors.Is(err, errStopped) {
		return err
	}
	if shutdownErr != nil {
		return fmt.Errorf("shutdown: %w", shutdownErr)
	}
	n.logger.Info("stopped")
	return nil
}

// logServing says the node is up, once it serves and, with gossip, has
// joined.
func (n *Node) logServing() {
	n.logger.Info("serving", "addr", n.ln.Addr().String(), "tls", n.tls != nil, "data", filepath.Join(n.cfg.DataDir, "log"),
		"acl", n.cfg.ACL, "sync", n.syncDescription(), "node", n.cfg.NodeID, "cluster", n.member != nil, "version", n.cfg.Version)
}

// loop is an actor for f, which runs until its context ends: the
// interrupt ends it. (ctx's end does not: the stop actor turns that into
// an interrupt, so every part stops in order.)
func loop(ctx context.Context, name string, f func(context.Context)) (execute func() error, interrupt func(error)) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return func() error {
			f(ctx)
			if ctx.Err() == nil {
				return fmt.Errorf("node: %s stopped by itself", name)
			}
			return nil
		}, func(error) {
			cancel()
		}
}
