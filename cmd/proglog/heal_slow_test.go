//go:build slow

package main_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// TestDamagedRecordHealsFromPeers: real processes. A byte of a record in a
// follower's store flips on disk, in a segment below its snapshots, where
// Raft's log no longer has the record. A read of it there answers DataLoss
// at first; the node fetches the record from a peer (over the peers' mutual
// TLS port, as a node) and repairs the frame in place, and from then on it
// serves the record, identical on every node, without a restart or an
// operator.
func TestDamagedRecordHealsFromPeers(t *testing.T) {
	c := startCluster(t, "--segment-bytes", "4KiB", "--raft-snapshot-threshold", "16",
		"--raft-snapshot-interval", "50ms", "--raft-trailing-logs", "4")
	leader := c.waitLeader(3)
	cl := c.client(leader.addr)
	for i := range 40 {
		req := &logv1.ProduceBatchRequest{}
		for j := range 4 {
			req.Records = append(req.Records, &logv1.Record{
				Key:     fmt.Appendf(nil, "k%d", i),
				Headers: []*logv1.Header{{Key: "batch", Value: fmt.Appendf(nil, "%d", i)}},
				Value:   fmt.Appendf(nil, "heal-%02d-%d-%s", i, j, strings.Repeat("v", 60)),
			})
		}
		ctx, cancel := c.call(10 * time.Second)
		_, err := cl.ProduceBatch(ctx, req)
		cancel()
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	c.waitConverged()
	f := c.followers(leader)[0]
	// Record 9 ("heal-02-1-..."), in the follower's first segment: sealed
	// long ago and linked by its snapshots.
	const off = 9
	store := filepath.Join(c.root, f.id, "log", "00000000000000000000.store")
	b, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("heal-02-1-"))
	if i < 0 {
		t.Fatalf("record %d not in %s", off, store)
	}
	fh, err := os.OpenFile(store, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte{b[i+12] ^ 0x20}, int64(i+12)); err != nil {
		t.Fatal(err)
	}
	fh.Close()

	fc := c.client(f.addr)
	sawDataLoss := false
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := c.call(5 * time.Second)
		resp, err := fc.Consume(ctx, &logv1.ConsumeRequest{Offset: off})
		cancel()
		if err == nil {
			if !strings.HasPrefix(string(resp.GetRecord().GetValue()), "heal-02-1-") || string(resp.GetRecord().GetKey()) != "k2" {
				t.Fatalf("record %d after healing: %v", off, resp.GetRecord())
			}
			break
		}
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeDataLoss {
			t.Fatalf("read of the damaged record: %v, want DataLoss until healed", err)
		}
		sawDataLoss = true
		if time.Now().After(deadline) {
			t.Fatalf("record %d still reads %v after 30 s:\n%s", off, err, f.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !sawDataLoss {
		t.Log("the first read already found the record healed (a snapshot check found the damage first)")
	}
	if !strings.Contains(f.out.String(), "healed a damaged record from a peer's copy") {
		t.Fatalf("%s does not say it healed the record:\n%s", f.id, f.out.String())
	}
	log := c.checkIdentical()
	if len(log) != 160 {
		t.Fatalf("the log has %d records, want 160", len(log))
	}
}
