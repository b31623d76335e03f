#!/usr/bin/env bash
# Restart after kill -9, one node (quickstart mutual TLS, durable):
# produce RECORDS records of 100 B (ProduceStream, batches of 100), kill -9
# the node, start it again and time how long until its first acknowledged
# produce; report its peak RSS, what it read from disk on the way, the data
# dir's size and the bytes the node wrote per byte produced (snapshots
# included).
#   scripts/bench-restart.sh [RECORDS] [path/to/proglog ...]
# Several binaries are measured one after the other in the same run (e.g.
# this tree's and the previous version's: git worktree add /tmp/old REV &&
# go build -o /tmp/proglog-old /tmp/old/cmd/proglog). If nats-server and nats
# are on PATH, NATS JetStream's restart is measured on a store of the same
# record count.
set -euo pipefail
records=${1:-10000000}
shift || true
bins=("$@")
work=$(mktemp -d)
pid=
cleanup() {
	[[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
if [[ ${#bins[@]} -eq 0 ]]; then
	go build -o "$work/proglog" ./cmd/proglog
	bins=("$work/proglog")
fi
addr=127.0.0.1:18500

now() { date +%s.%N; }
field() { awk -v k="$1" '$1 == k":" {print $2}' "$2"; } # key file
bytes() { numfmt --to=iec --suffix=B "$1"; }

first_ack() { # bin data: until a produce is acknowledged
	# Wait for the port first: the CLI backs off between failed connects.
	for _ in $(seq 6000); do
		(exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null && break
		sleep 0.005
	done
	for _ in $(seq 600); do
		"$1" produce --data-dir "$2" --addr "$addr" --timeout 2s -q probe >/dev/null 2>&1 && return 0
		sleep 0.02
	done
	echo "no acknowledged produce after the restart" >&2
	return 1
}

for bin in "${bins[@]}"; do
	data=$work/data
	rm -rf "$data"
	echo "== $bin: $records records"
	"$bin" serve --data-dir "$data" --addr "$addr" --log-level error 2>"$work/serve.log" &
	pid=$!
	first_ack "$bin" "$data"
	"$bin" bench produce --data-dir "$data" --addr "$addr" --mode stream --batch 100 --records "$records" | tail -1
	echo "peak RSS while producing: $(field VmHWM /proc/$pid/status) kB (now RssAnon $(field RssAnon /proc/$pid/status) kB, RssFile $(field RssFile /proc/$pid/status) kB; scripts/bench-rss.sh repeats it)"
	written=$(field write_bytes /proc/$pid/io)
	produced=$((records * 100))
	echo "written by the node: $(bytes "$written") for $(bytes $produced) of values: $(awk -v w="$written" -v p="$produced" 'BEGIN {printf "%.2f", w/p}') bytes per byte"
	echo "data dir: $(du -sb "$data" | cut -f1 | xargs -I{} numfmt --to=iec --suffix=B {}) ($(du -sb "$data/raft/log" | cut -f1 | xargs -I{} numfmt --to=iec --suffix=B {}) Raft log, $(du -sb "$data/log" | cut -f1 | xargs -I{} numfmt --to=iec --suffix=B {}) store; $(awk -v d="$(du -sb "$data" | cut -f1)" -v n="$records" 'BEGIN {printf "%.0f", d/n}') B per record)"
	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	sync
	start=$(now)
	"$bin" serve --data-dir "$data" --addr "$addr" --log-level error 2>>"$work/serve.log" &
	pid=$!
	first_ack "$bin" "$data"
	end=$(now)
	echo "restart after kill -9 to the first ack: $(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b-a}') s, peak RSS $(field VmHWM /proc/$pid/status) kB, read $(bytes "$(field read_bytes /proc/$pid/io)")"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=
done

# Three nodes: kill -9 a follower of a cluster holding the records, start
# it again and time how long until it serves the last acknowledged record.
bin=${bins[-1]}
key=$(head -c 32 /dev/urandom | base64)
c=$work/cluster
rm -rf "$c" "$work/data"
node() { # i [serve flags...]
	local i=$1
	shift
	"$bin" serve --data-dir "$c/n$i" --node-id "n$i" --addr "127.0.0.1:185${i}0" --gossip-addr "127.0.0.1:185${i}1" \
		--gossip-key "$key" --log-level error "$@" 2>>"$c/n$i.log" &
	pids[$i]=$!
}
declare -a pids
mkdir -p "$c"
node 1 --bootstrap
addr=127.0.0.1:18510 first_ack "$bin" "$c/n1"
tls=(--tls-cert "$c/n1/certs/server.pem" --tls-key "$c/n1/certs/server-key.pem" --tls-ca "$c/n1/certs/ca.pem" --acl "$c/n1/acl.csv")
node 2 --join 127.0.0.1:18511 "${tls[@]}"
node 3 --join 127.0.0.1:18511 "${tls[@]}"
sleep 3
echo "== three nodes, $bin: $records records, then kill -9 of follower n3"
"$bin" bench produce --data-dir "$c/n1" --addr 127.0.0.1:18510 --mode stream --batch 100 --records "$records" | tail -1
last=$("$bin" produce --data-dir "$c/n1" --addr 127.0.0.1:18510 last)
for _ in $(seq 600); do # n3 has everything before it is killed
	"$bin" consume --data-dir "$c/n1" --addr 127.0.0.1:18530 --from "$last" --count 1 --timeout 2s >/dev/null 2>&1 && break
	sleep 0.1
done
kill -9 "${pids[3]}"
wait "${pids[3]}" 2>/dev/null || true
sync
start=$(now)
node 3 --join 127.0.0.1:18511 "${tls[@]}"
for _ in $(seq 6000); do
	"$bin" consume --data-dir "$c/n1" --addr 127.0.0.1:18530 --from "$last" --count 1 --timeout 2s >/dev/null 2>&1 && break
	sleep 0.01
done
end=$(now)
echo "follower restart after kill -9 to serving the last acknowledged record: $(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b-a}') s, peak RSS $(field VmHWM /proc/${pids[3]}/status) kB"
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true

if command -v nats-server >/dev/null && command -v nats >/dev/null; then
	echo "== NATS JetStream: $records messages of 100 B"
	js=$work/js
	nats-server -js -sd "$js" -p 18600 >/dev/null 2>&1 &
	pid=$!
	sleep 1
	nats -s nats://127.0.0.1:18600 stream add bench --subjects bench --storage file --defaults >/dev/null
	nats -s nats://127.0.0.1:18600 bench pub bench --js --stream bench --msgs "$records" --size 100 --no-progress | tail -2
	echo "data dir: $(du -sb "$js" | cut -f1 | xargs -I{} numfmt --to=iec --suffix=B {})"
	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	start=$(now)
	nats-server -js -sd "$js" -p 18600 >/dev/null 2>&1 &
	pid=$!
	until nats -s nats://127.0.0.1:18600 pub bench x --js >/dev/null 2>&1; do sleep 0.02; done
	end=$(now)
	echo "restart after kill -9 to the first ack: $(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b-a}') s, peak RSS $(field VmHWM /proc/$pid/status) kB"
fi
