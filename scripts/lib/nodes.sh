# Sourced by the bench scripts: `proglog serve` processes on loopback,
# quickstart mutual TLS. The caller sets bin (the binary to measure, or
# empty) and calls prepare; every process started is appended to pids.

# prepare: a temporary directory, work, for data and logs, removed on exit
# with every background process the script started (nodes, perf) killed;
# bin built from ./cmd/proglog there if the caller gave none.
prepare() {
	work=$(mktemp -d)
	pids=()
	trap cleanup EXIT
	if [[ -z $bin ]]; then
		bin=$work/proglog
		go build -o "$bin" ./cmd/proglog
	fi
}

cleanup() {
	local p
	for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}

# stop_all: stop the nodes and remove their data, for the next start.
stop_all() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait "${pids[@]}" 2>/dev/null || true
	pids=()
	rm -rf "$work"/n*
}

# ready addr: wait until the node answers as a member with a leader.
ready() {
	for _ in $(seq 100); do
		"$bin" whoami --data-dir "$work/n1" --addr "$1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "node $1 did not come up" >&2
	return 1
}

# start_one [serve flags]: n1 on 127.0.0.1:18400 alone, a one-member
# cluster, as `proglog serve` runs by default.
start_one() {
	"$bin" serve --data-dir "$work/n1" --node-id n1 --addr 127.0.0.1:18400 "$@" --log-level error 2>"$work/single.log" &
	pids+=($!)
	ready 127.0.0.1:18400
	sleep 2 # the one-member cluster elects itself
}

# start_three [serve flags]: n1 (127.0.0.1:18400) bootstraps a cluster and
# leads it; n2 and n3 (:18420, :18430) join it with n1's CA.
start_three() {
	local key i
	key=$(head -c 32 /dev/urandom | base64)
	"$bin" serve --data-dir "$work/n1" --node-id n1 --addr 127.0.0.1:18400 --gossip-addr 127.0.0.1:18401 \
		--gossip-key "$key" --bootstrap "$@" --log-level error 2>"$work/n1.log" &
	pids+=($!)
	ready 127.0.0.1:18400
	sleep 2
	for i in 2 3; do
		"$bin" serve --data-dir "$work/n$i" --node-id "n$i" --addr "127.0.0.1:184${i}0" --gossip-addr "127.0.0.1:184${i}1" \
			--gossip-key "$key" --join 127.0.0.1:18401 \
			--tls-cert "$work/n1/certs/server.pem" --tls-key "$work/n1/certs/server-key.pem" \
			--tls-ca "$work/n1/certs/ca.pem" --acl "$work/n1/acl.csv" "$@" --log-level error 2>"$work/n$i.log" &
		pids+=($!)
	done
	ready 127.0.0.1:18420
	ready 127.0.0.1:18430
	sleep 3 # both joined and caught up
}
