#!/usr/bin/env bash
# Peak RSS while producing (issue 10): one `proglog serve` (quickstart
# mutual TLS, durable) takes RECORDS records of 100 B over ProduceStream
# (batches of 100, `proglog bench produce`'s defaults); the script prints
# the bench's records/s and the server's VmHWM, RssAnon and RssFile
# (/proc/<pid>/status) once the bench has finished. Each of RUNS rounds
# runs every binary once, one after the other (interleaved, so a noisy
# machine disturbs them alike), then a three-node cluster per binary: the
# same records sent to the leader, with each node's peak RSS.
#   scripts/bench-rss.sh [RECORDS] [RUNS] [path/to/proglog ...]
# (make bench-rss). Compare versions by giving several binaries, e.g. git
# worktree add /tmp/old REV && (cd /tmp/old && go build -o /tmp/proglog-old
# ./cmd/proglog).
set -euo pipefail
records=${1:-2000000}
runs=${2:-3}
shift 2 || shift $# || true
bins=("$@")
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
if [[ ${#bins[@]} -eq 0 ]]; then
	go build -o "$work/proglog" ./cmd/proglog
	bins=("$work/proglog")
fi

rss() { # pid: "VmHWM 12345 kB, RssAnon ..., RssFile ..."
	awk '$1 ~ /^(VmHWM|RssAnon|RssFile):$/ {sub(":", "", $1); s = s sep $1 " " $2 " kB"; sep = ", "} END {print s}' "/proc/$1/status"
}

first_ack() { # bin data addr: until a produce is acknowledged
	for _ in $(seq 600); do
		"$1" produce --data-dir "$2" --addr "$3" --timeout 2s -q probe >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "no acknowledged produce from $3" >&2
	return 1
}

produce() { # bin data addr: "N records/s"
	"$1" bench produce --data-dir "$2" --addr "$3" --mode stream --batch 100 --records "$records" |
		sed -n 's/.*: \([0-9]*\) records\/s.*/\1 records\/s/p'
}

echo "$records records of 100 B, $runs rounds; load average $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
for round in $(seq "$runs"); do
	for bin in "${bins[@]}"; do
		rm -rf "$work/d"
		"$bin" serve --data-dir "$work/d" --addr 127.0.0.1:18570 --log-level error 2>>"$work/serve.log" &
		pids=($!)
		first_ack "$bin" "$work/d" 127.0.0.1:18570
		rate=$(produce "$bin" "$work/d" 127.0.0.1:18570)
		echo "round $round, one node, $bin: $rate; $(rss "${pids[0]}"); load $(cut -d' ' -f1 /proc/loadavg)"
		kill "${pids[0]}"
		wait "${pids[0]}" 2>/dev/null || true
		pids=()
	done
done

# Three nodes per binary: n1 starts the cluster and leads, n2 and n3 join.
key=$(head -c 32 /dev/urandom | base64)
for bin in "${bins[@]}"; do
	c=$work/cluster
	rm -rf "$c"
	mkdir -p "$c"
	node() { # i [serve flags...]
		local i=$1
		shift
		"$bin" serve --data-dir "$c/n$i" --node-id "n$i" --addr "127.0.0.1:185${i}0" --gossip-addr "127.0.0.1:185${i}1" \
			--gossip-key "$key" --log-level error "$@" 2>>"$c/n$i.log" &
		pids+=($!)
	}
	node 1 --bootstrap
	first_ack "$bin" "$c/n1" 127.0.0.1:18510
	tls=(--tls-cert "$c/n1/certs/server.pem" --tls-key "$c/n1/certs/server-key.pem" --tls-ca "$c/n1/certs/ca.pem" --acl "$c/n1/acl.csv")
	node 2 --join 127.0.0.1:18511 "${tls[@]}"
	node 3 --join 127.0.0.1:18511 "${tls[@]}"
	sleep 3 # the followers join and catch up (as scripts/bench-restart.sh)
	rate=$(produce "$bin" "$c/n1" 127.0.0.1:18510)
	echo "three nodes, $bin: $rate; leader n1: $(rss "${pids[0]}"); n2: $(rss "${pids[1]}"); n3: $(rss "${pids[2]}")"
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	pids=()
done
