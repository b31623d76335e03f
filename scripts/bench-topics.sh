#!/usr/bin/env bash
# Topics and partitions (issue 12) on a three-node loopback cluster:
# separate `proglog serve` processes, quickstart mutual TLS, durable.
#   scripts/bench-topics.sh [path/to/proglog]
# Parts (PARTS, default "throughput leaders idle"), each on fresh clusters:
#   throughput  one topic of 1 partition vs one of 12 (replication factor
#               3) and the default topic (the system group), alternating,
#               ROUNDS times: `proglog bench produce --topic T` with each
#               (and p12-direct: `--topics 1 --partitions 12`, the client
#               naming each partition and sending it to its leader)
#               of TP_CONFIGS (";"-separated argument sets), and the nodes'
#               CPU seconds during each run.
#   leaders     leaders per node of a 30-partition topic right after
#               CreateTopic returns, then every LEADER_STEP seconds up to
#               LEADER_WAIT.
#   idle        for each variant in VARIANTS: IDLE_TOPICS topics of
#               IDLE_PARTS partitions (each creation timed until every
#               partition has a leader; before them, CPU per node over
#               IDLE_BASE_SECS with no topics), then CPU per node (% of one core
#               from /proc/<pid>/stat over IDLE_SECS, ROUNDS windows), RSS,
#               goroutines (/metrics), then LAG_SAMPLES single records
#               produced to a partition the system leader leads, timed
#               until `proglog consume --follow` on a follower prints them
#               (seen time minus the record's time, which the leader
#               stamps when it proposes the entry). Also each node's open
#               sockets (/proc/<pid>/fd).
# Variants are "name:serve flags" separated by ";" (flags apply to every node);
# the default compares the partition groups' transports, --raft-transport
# stream (hashicorp/raft's NetworkTransport) and mux, in the same run.
# throughput runs once per transport in TP_TRANSPORTS.
# Every figure is printed with the load average (uptime) when it was taken.
set -euo pipefail
bin=${1:-}
PARTS=${PARTS:-throughput leaders idle}
ROUNDS=${ROUNDS:-2}
TP_RECORDS=${TP_RECORDS:-1000000}
TP_CONFIGS=${TP_CONFIGS:---mode stream --batch 100 --clients 8;--mode stream --batch 1000 --clients 8}
LEADER_WAIT=${LEADER_WAIT:-15}
LEADER_STEP=${LEADER_STEP:-5}
IDLE_TOPICS=${IDLE_TOPICS:-3}
IDLE_PARTS=${IDLE_PARTS:-100}
IDLE_SETTLE=${IDLE_SETTLE:-10}
IDLE_SECS=${IDLE_SECS:-30}
IDLE_BASE_SECS=${IDLE_BASE_SECS:-15}
LAG_SAMPLES=${LAG_SAMPLES:-6}
# The partition groups' transport: "stream" is hashicorp/raft's
# NetworkTransport (connections per group, the version before raftmux),
# "mux" the default (one connection per peer for every group).
# A node refuses connections past --max-conns (default 1024, Raft's
# included), and stream opens ~3 per partition replica per peer: with 300
# partitions it needs a higher limit to run at all.
VARIANTS=${VARIANTS:-"stream:--raft-transport stream --max-conns 8192;mux:--raft-transport mux"}
TP_TRANSPORTS=${TP_TRANSPORTS:-stream mux} # throughput: a cluster per transport
TP_FLAGS=${TP_FLAGS:-} # throughput: more serve flags for every node (e.g. --partition-raft-log own)
PORT=${PORT:-19400} # nodes listen on PORT, PORT+10, PORT+20 (gossip: +1)

work=$(mktemp -d)
pids=()
bg=() # helpers (the follower's consumer)
cleanup() {
	for p in "${bg[@]}" "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [[ -z $bin ]]; then
	bin=$work/proglog
	go build -o "$bin" ./cmd/proglog
fi
key=$(head -c 32 /dev/urandom | base64)
summary=$work/summary
: >"$summary"

load() { cut -d, -f1 /proc/loadavg | cut -d' ' -f1; } # 1-minute load average
note() { echo "$*" | tee -a "$summary"; }
addr() { echo "127.0.0.1:$((PORT + 10 * ($1 - 1)))"; }
gossip() { echo "127.0.0.1:$((PORT + 10 * ($1 - 1) + 1))"; }
cli() { "$bin" "$@" --data-dir "$dir/n1" --addr "$(addr 1)"; }
rpc() { # method [addr]: a unary call with the Connect protocol's JSON
	curl -sf --cert "$dir/n1/certs/root.pem" --key "$dir/n1/certs/root-key.pem" --cacert "$dir/n1/certs/ca.pem" \
		-H 'Content-Type: application/json' -d '{}' "https://${2:-$(addr 1)}/log.v1.LogService/$1"
}
metric() { # node name: a gauge from the node's /metrics (the root certificate has admin)
	curl -sf --cert "$dir/n1/certs/root.pem" --key "$dir/n1/certs/root-key.pem" --cacert "$dir/n1/certs/ca.pem" \
		"https://$(addr "$1")/metrics" | awk -v m="$2" '$1 == m { printf "%d", $2 }' || echo "?"
}
ticks() { # pid: user+system CPU in clock ticks
	local s
	s=$(<"/proc/$1/stat")
	s=${s##*) }
	set -- $s
	echo $((${12} + ${13}))
}
hz=$(getconf CLK_TCK)
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

ready() { # node: until it answers as a member
	for _ in $(seq 150); do
		"$bin" whoami --data-dir "$dir/n1" --addr "$(addr "$1")" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "node $1 did not come up" >&2
	return 1
}

start() { # label, then serve flags for every node
	dir=$work/$1
	shift
	mkdir -p "$dir"
	"$bin" serve --data-dir "$dir/n1" --node-id n1 --addr "$(addr 1)" --gossip-addr "$(gossip 1)" \
		--gossip-key "$key" --bootstrap --log-level error "$@" 2>"$dir/n1.log" &
	pids=($!)
	ready 1
	sleep 2
	for i in 2 3; do
		"$bin" serve --data-dir "$dir/n$i" --node-id "n$i" --addr "$(addr "$i")" --gossip-addr "$(gossip "$i")" \
			--gossip-key "$key" --join "$(gossip 1)" \
			--tls-cert "$dir/n1/certs/server.pem" --tls-key "$dir/n1/certs/server-key.pem" \
			--tls-ca "$dir/n1/certs/ca.pem" --acl "$dir/n1/acl.csv" --log-level error "$@" 2>"$dir/n$i.log" &
		pids+=($!)
	done
	ready 2
	ready 3
	for _ in $(seq 100); do # all three voters, and a leader
		[[ $(rpc GetServers | jq '[.servers[] | select(.id)] | length') == 3 ]] &&
			rpc GetServers | jq -e '.servers[] | select(.isLeader)' >/dev/null && break
		sleep 0.2
	done
	sleep 2
}

stop() {
	for p in "${bg[@]}" "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "${bg[@]}" "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=() bg=()
	rm -rf "$dir"
}

leaders() { # topic: leader count per node, "-" for none
	cli topics describe "$1" --format json |
		jq -c '[.partitions[] | (.leader // "" | if . == "" then "-" else . end)] | group_by(.) | map({(.[0]): length}) | add'
}
leaderless() { # topic: partitions without a leader
	cli topics describe "$1" --format json | jq '[.partitions[] | select((.leader // "") == "" or .leader == "-")] | length'
}
create_timed() { # topic partitions: time CreateTopic, then until every partition has a leader
	local t0 t1
	t0=$(now)
	# CreateTopic answers once this node's replicas have leaders (at most
	# ~10 s); the client's deadline is longer so it does not cut that short.
	cli topics create "$1" --partitions "$2" --replication-factor 3 --timeout 2m >/dev/null
	t1=$(since "$t0")
	for _ in $(seq 2400); do
		[[ $(leaderless "$1") == 0 ]] && break
		sleep 0.05
	done
	echo "create returned ${t1} s, every partition led after $(since "$t0") s"
}

throughput() {
	local tr
	for tr in $TP_TRANSPORTS; do
		throughput_on "$tr"
	done
}

throughput_on() { # transport
	note "## throughput, partitions on --raft-transport $1"
	# shellcheck disable=SC2086 # TP_FLAGS is a list of flags
	start "tp-$1" --raft-transport "$1" --max-conns 8192 $TP_FLAGS
	cli topics create p1 --partitions 1 --replication-factor 3 >/dev/null
	cli topics create p12 --partitions 12 --replication-factor 3 >/dev/null
	cli topics create bench-0 --partitions 12 --replication-factor 3 >/dev/null # p12-direct's
	sleep 10 # leaders handed to the preferred replicas
	note "## throughput: p1's leader: $(leaders p1); p12's leaders: $(leaders p12)"
	local configs args r t
	IFS=';' read -ra configs <<<"$TP_CONFIGS"
	for args in "${configs[@]}"; do
		note "proglog bench produce --topic T $args --records $TP_RECORDS (to n1, the system leader)"
		for r in $(seq "$ROUNDS"); do
			local p1rate=0
			for t in default p1 p12 p12-direct; do
				run_produce "$r" "$t" "$args"
				[[ $t == p1 ]] && p1rate=$rate
			done
			note "  round $r: p12-direct / p1 = $(awk -v a="$rate" -v b="$p1rate" 'BEGIN { printf "%.0f%%", 100 * a / b }'), per p12 leader (3 nodes) $((rate / 3)) records/s"
		done
	done
	stop
}

run_produce() { # round topic args: one bench run, with the nodes' CPU
	local before=() cpu="" total=0 out l i d
	for i in 0 1 2; do before+=("$(ticks "${pids[$i]}")"); done
	l=$(load)
	# shellcheck disable=SC2086 # the arguments split into words
	local where=(--topic "$2")
	# p12-direct: the 12 partitions of bench-0 named by the client, each
	# sent straight to its leader (a Producer per partition with stream).
	[[ $2 == p12-direct ]] && where=(--topics 1 --partitions 12)
	out=$(cli bench produce "${where[@]}" $3 --records "$TP_RECORDS" | tail -2)
	for i in 0 1 2; do
		d=$(($(ticks "${pids[$i]}") - ${before[$i]}))
		total=$((total + d))
		cpu+=" n$((i + 1)) $(awk -v d="$d" -v hz="$hz" 'BEGIN { printf "%.1f", d / hz }')"
	done
	rate=$(sed -n 's/.*: \([0-9]*\) records\/s.*/\1/p' <<<"$out")
	note "  round $1 topic $2 (load $l → $(load)): $rate records/s;$(sed -n 's/.*p50 \([^ ]*\) .*p99 \([^ ]*\) .*/ p50 \1 p99 \2/p' <<<"$out");" \
		"node CPU s:$cpu; $(awk -v d="$total" -v hz="$hz" -v n="$TP_RECORDS" 'BEGIN { printf "%.1f", 1e6 * d / hz / n }') µs CPU per record (3 nodes)"
}

leaders_part() {
	note "## leaders: topics create l30 --partitions 30 --replication-factor 3"
	start leaders
	local l
	l=$(load)
	note "$(create_timed l30 30) (load $l)"
	note "right after: $(leaders l30); GetServers partition_leaders (the default topic's counts for its leader): $(rpc GetServers | jq -c '[.servers[] | {(.id): (.partitionLeaders // 0)}] | add')"
	for s in $(seq "$LEADER_STEP" "$LEADER_STEP" "$LEADER_WAIT"); do
		sleep "$LEADER_STEP"
		note "after ~$s s: $(leaders l30) (load $(load))"
	done
	stop
}

idle() { # label, then serve flags
	local label=$1
	shift
	note "## idle: $label (serve $*): $IDLE_TOPICS topics × $IDLE_PARTS partitions, replication factor 3"
	start "idle-$label" "$@"
	idle_cpu "no topics (the system group alone), round 1" "$IDLE_BASE_SECS"
	for t in $(seq "$IDLE_TOPICS"); do
		local l
		l=$(load)
		note "  create i$t ($IDLE_PARTS partitions): $(create_timed "i$t" "$IDLE_PARTS") (load $l)"
	done
	sleep "$IDLE_SETTLE"
	for r in $(seq "$ROUNDS"); do
		idle_cpu "$((IDLE_TOPICS * IDLE_PARTS)) partitions, round $r" "$IDLE_SECS"
	done
	local line="  RSS MB / goroutines / sockets:"
	for i in 1 2 3; do
		line+=" n$i $(awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/${pids[$((i - 1))]}/status" 2>/dev/null || echo "? (gone)") / $(metric "$i" go_goroutines) / $(sockets "${pids[$((i - 1))]}")"
	done
	note "$line"
	lag
	stop
}

sockets() { # pid: its open sockets (TCP and UDP: Raft, the listener, gossip, clients)
	find "/proc/$1/fd" -lname 'socket:*' 2>/dev/null | wc -l
}

idle_cpu() { # label seconds: each node's CPU over that long, % of one core
	local before=() line l i
	l=$(load)
	for i in 0 1 2; do before+=("$(ticks "${pids[$i]}")"); done
	sleep "$2"
	line="  idle $2 s, $1 (load $l → $(load)): CPU % of one core"
	for i in 0 1 2; do
		line+=" n$((i + 1)) $(awk -v d="$(($(ticks "${pids[$i]}") - ${before[$i]}))" -v hz="$hz" -v s="$2" 'BEGIN { printf "%.1f", 100 * d / hz / s }')"
	done
	note "$line"
}

lag() { # a partition the system leader (n1) leads, read on a follower
	local sys p out
	sys=$(rpc GetServers | jq -r '.servers[] | select(.isLeader) | .id')
	p=$(cli topics describe i1 --format json | jq --arg n "$sys" '[.partitions[] | select(.leader == $n) | .partition // 0][0]')
	out=$dir/consumed
	# Each line is stamped when it arrives; the client reads from the
	# system group's followers, n2 or n3.
	mkfifo "$dir/fifo"
	while IFS= read -r line; do echo "$EPOCHREALTIME $line"; done <"$dir/fifo" >"$out" &
	bg+=($!)
	"$bin" consume --data-dir "$dir/n1" --addr "$(addr 1)" --topic i1 --partition "$p" --follow --from-end --format json \
		>"$dir/fifo" 2>"$dir/consume.log" &
	bg+=($!)
	sleep 2
	for i in $(seq "$LAG_SAMPLES"); do
		cli produce --topic i1 --partition "$p" -q "lag-$i" >/dev/null
		sleep "$(awk -v i="$i" 'BEGIN { srand(i); printf "%.2f", 0.7 + rand() }')"
	done
	sleep 2
	local lags
	lags=$(while read -r seen json; do
		t=$(jq -r .time <<<"$json")
		awk -v s="$seen" -v t="$(date -d "$t" +%s.%N)" 'BEGIN { printf "%.0f ", 1000 * (s - t) }'
	done <"$out")
	note "  follower lag, topic i1 partition $p led by $sys, ms (load $(load)): ${lags:-none seen}"
}

for part in $PARTS; do
	case $part in
	throughput) throughput ;;
	leaders) leaders_part ;;
	idle)
		IFS=';' read -ra vs <<<"$VARIANTS"
		for v in "${vs[@]}"; do
			# shellcheck disable=SC2086 # the flags split into words
			idle "${v%%:*}" ${v#*:}
		done
		;;
	*) echo "unknown part $part" >&2; exit 2 ;;
	esac
done
echo
echo "==== summary ($(nproc) cores; bin $bin)"
cat "$summary"
