#!/usr/bin/env bash
# Produce throughput against one node and against the leader of a
# three-node cluster, in the same run: separate `proglog serve` processes on loopback,
# quickstart mutual TLS, durable (Raft log fsynced on a quorum), 100 B records.
#   scripts/bench-cluster.sh [path/to/proglog]
# Give another version's binary to compare versions (its "one node" is
# whatever its `serve` runs by default).
set -euo pipefail
bin=${1:-}
. "$(dirname "$0")/lib/nodes.sh"
prepare

bench() { # label addr
	echo "== $1: stream, batch 100"
	"$bin" bench produce --data-dir "$work/n1" --addr "$2" --mode stream --batch 100 --records 2000000 | tail -2
	echo "== $1: ProduceBatch x100, 8 clients"
	"$bin" bench produce --data-dir "$work/n1" --addr "$2" --mode batch --batch 100 --clients 8 --records 1000000 | tail -2
	echo "== $1: unary Produce, 64 clients"
	"$bin" bench produce --data-dir "$work/n1" --addr "$2" --mode unary --clients 64 --records 30000 | tail -2
}

# One node: a one-member cluster, as `proglog serve` runs by default.
start_one
bench "one node" 127.0.0.1:18400
kill "${pids[0]}"
wait "${pids[0]}" || true
pids=()
rm -rf "$work/n1/raft" "$work/n1/log" "$work/n1/serf.snapshot"

# Three nodes: n1 starts the cluster, n2 and n3 join it with n1's CA.
start_three
# n1 bootstrapped the cluster and leads it (nothing failed since).
bench "three nodes, to the leader" 127.0.0.1:18400
