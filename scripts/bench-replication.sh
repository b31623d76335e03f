#!/usr/bin/env bash
# Where the three-node stream produce spends its time: one node, then a
# three-node cluster (separate `proglog serve` processes on loopback,
# quickstart mutual TLS), `bench produce --mode stream --batch 100 --records
# 2000000` against the leader, with each process's CPU seconds (utime+stime
# from /proc/<pid>/stat) over the produce, and the client's, then each
# node's Raft log fdatasyncs (count and mean duration, from /metrics).
#   scripts/bench-replication.sh [path/to/proglog]
# Environment:
#   ROUNDS=N           rounds (default 1)
#   WINDOW=N           the client's --window (default 64, as bench-cluster.sh)
#   CLIENTS=N          concurrent streams (bench produce --clients; default 1)
#   SERVE_FLAGS="..."  extra `serve` flags for every node
#   TMPDIR=/dev/shm    data directories on tmpfs: no disk, no fsync cost
#   PERF=1             `perf record -g` the leader and one follower into
#                      perf.n1 and perf.n2 in the current directory
set -euo pipefail
bin=${1:-}
rounds=${ROUNDS:-1}
window=${WINDOW:-64}
clients=${CLIENTS:-1}
read -r -a serve_flags <<<"${SERVE_FLAGS:-}"
. "$(dirname "$0")/lib/nodes.sh"
prepare
perfs=()

cpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"; }
# raft_log addr: the node's Raft log fdatasyncs so far and their mean
# duration (proglog_logstore_fsync_seconds{log="raft"}), and the entries
# it read back from its Raft log rather than from the cache of the latest
# ones (proglog_cluster_raft_log_cache_misses_total), from one /metrics.
raft_log() {
	curl -sk --cert "$work/n1/certs/root.pem" --key "$work/n1/certs/root-key.pem" \
		--cacert "$work/n1/certs/ca.pem" "https://$1/metrics" |
		awk '/^proglog_logstore_fsync_seconds_sum\{log="raft"\}/ {s=$2}
			/^proglog_logstore_fsync_seconds_count\{log="raft"\}/ {n=$2}
			/^proglog_cluster_raft_log_cache_misses_total/ {m+=$2}
			END {if (n > 0) printf "%d syncs, %.2f ms each", n, 1000*s/n; else printf "no syncs"
				printf ", %d cache misses", m}'
}
produce() { # label: prints the rate and the client's CPU seconds
	/usr/bin/time -f "client CPU s %U+%S" "$bin" bench produce --data-dir "$work/n1" --addr 127.0.0.1:18400 \
		--mode stream --batch 100 --records 2000000 --window "$window" --clients "$clients" 2>&1 | grep -E "records/s|client CPU" | sed "s/^ */$1: /"
}

for r in $(seq "$rounds"); do
	echo "== round $r (load $(cut -d' ' -f1 /proc/loadavg), window $window, $clients clients, data in ${TMPDIR:-/tmp})"
	start_one "${serve_flags[@]}"
	c0=$(cpu "${pids[0]}")
	produce "one node"
	echo "one node: server CPU s $(awk -v a="$c0" -v b="$(cpu "${pids[0]}")" 'BEGIN{printf "%.2f", b-a}')"
	stop_all

	start_three "${serve_flags[@]}"
	before=()
	for p in "${pids[@]}"; do before+=("$(cpu "$p")"); done
	if [[ ${PERF:-} ]]; then
		perf record -F 499 -g -p "${pids[0]}" -o perf.n1 2>/dev/null &
		perfs+=($!)
		perf record -F 499 -g -p "${pids[1]}" -o perf.n2 2>/dev/null &
		perfs+=($!)
	fi
	produce "three nodes"
	if [[ ${PERF:-} ]]; then
		kill -INT "${perfs[@]}"
		wait "${perfs[@]}" 2>/dev/null || true
		perfs=()
	fi
	line="three nodes: server CPU s"
	for i in 0 1 2; do
		line+=" n$((i + 1)) $(awk -v a="${before[$i]}" -v b="$(cpu "${pids[$i]}")" 'BEGIN{printf "%.2f", b-a}')"
	done
	echo "$line"
	line="three nodes: Raft log fdatasyncs (since start)"
	for a in 127.0.0.1:18400 127.0.0.1:18420 127.0.0.1:18430; do
		line+="; ${a##*:} $(raft_log "$a")"
	done
	echo "$line"
	stop_all
done
