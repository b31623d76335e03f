#!/usr/bin/env bash
# Produce throughput against one node and against the leader of a
# three-node cluster, in the same run: separate `proglog serve` processes on loopback,
# quickstart mutual TLS, durable (Raft log fsynced on a quorum), 100 B records.
#   scripts/bench-cluster.sh [path/to/proglog]
# Give another version's binary to compare versions (its "one node" is
# whatever its `serve` runs by default).
set -euo pipefail
bin=${1:-}
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
if [[ -z $bin ]]; then
	bin=$work/proglog
	go build -o "$bin" ./cmd/proglog
fi
key=$(head -c 32 /dev/urandom | base64)

ready() { # addr: wait until the node answers as a member with a leader
	for _ in $(seq 100); do
		"$bin" whoami --data-dir "$work/n1" --addr "$1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "node $1 did not come up" >&2
	return 1
}

bench() { # label addr
	echo "== $1: stream, batch 100"
	"$bin" bench produce --data-dir "$work/n1" --addr "$2" --mode stream --batch 100 --records 2000000 | tail -2
	echo "== $1: ProduceBatch x100, 8 clients"
	"$bin" bench produce --data-dir "$work/n1" --addr "$2" --mode batch --batch 100 --clients 8 --records 1000000 | tail -2
	echo "== $1: unary Produce, 64 clients"
	"$bin" bench produce --data-dir "$work/n1" --addr "$2" --mode unary --clients 64 --records 30000 | tail -2
}

# One node: a one-member cluster, as `proglog serve` runs by default.
"$bin" serve --data-dir "$work/n1" --node-id n1 --addr 127.0.0.1:18400 --log-level error 2>"$work/single.log" &
pids+=($!)
ready 127.0.0.1:18400
sleep 2 # the one-member cluster elects itself
bench "one node" 127.0.0.1:18400
kill "${pids[0]}"
wait "${pids[0]}" || true
pids=()
rm -rf "$work/n1/raft" "$work/n1/log" "$work/n1/serf.snapshot"

# Three nodes: n1 starts the cluster, n2 and n3 join it with n1's CA.
"$bin" serve --data-dir "$work/n1" --node-id n1 --addr 127.0.0.1:18400 --gossip-addr 127.0.0.1:18401 \
	--gossip-key "$key" --bootstrap --log-level error 2>"$work/n1.log" &
pids+=($!)
ready 127.0.0.1:18400
sleep 2
for i in 2 3; do
	"$bin" serve --data-dir "$work/n$i" --node-id "n$i" --addr "127.0.0.1:184${i}0" --gossip-addr "127.0.0.1:184${i}1" \
		--gossip-key "$key" --join 127.0.0.1:18401 \
		--tls-cert "$work/n1/certs/server.pem" --tls-key "$work/n1/certs/server-key.pem" \
		--tls-ca "$work/n1/certs/ca.pem" --acl "$work/n1/acl.csv" --log-level error 2>"$work/n$i.log" &
	pids+=($!)
done
ready 127.0.0.1:18420
ready 127.0.0.1:18430
sleep 3 # both joined and caught up
# n1 bootstrapped the cluster and leads it (nothing failed since).
bench "three nodes, to the leader" 127.0.0.1:18400
