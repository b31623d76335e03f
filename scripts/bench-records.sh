#!/bin/bash
# bench-records.sh BIN LABEL [produce flags...]: one fresh node, 2M records streamed, then consumed;
# prints throughput, the server's CPU seconds for each phase (utime+stime) and the client's.
# SERVE_FLAGS="..." adds flags to `serve` (e.g. --memory-limit 0).
set -e
BIN=$1; LABEL=$2; shift 2
D=$(mktemp -d); PORT=${PORT:-18500}
$BIN serve --data-dir $D --addr 127.0.0.1:$PORT ${SERVE_FLAGS:-} > $D/serve.log 2>&1 &
PID=$!
for i in $(seq 50); do [ -e $D/certs/root.pem ] && $BIN stats --data-dir $D --addr 127.0.0.1:$PORT >/dev/null 2>&1 && break; sleep 0.2; done
# The server's CPU seconds, user and system: on this kind of machine the
# system part (the page cache's) moves far more from run to run.
cpu() { awk '{print ($14+$15)/100, $14/100, $15/100}' /proc/$PID/stat; }
echo "== $LABEL"
read c0 u0 s0 <<< "$(cpu)"
# The client's CPU seconds too: on a machine shared with other work, CPU
# per record moves less than records per second.
TIMEFORMAT='  client CPU: %3U s user + %3S s system'
time $BIN bench produce --data-dir $D --addr 127.0.0.1:$PORT --mode stream --batch 100 --records 2000000 "$@" | grep -E "records/s"
read c1 u1 s1 <<< "$(cpu)"
time $BIN bench consume --data-dir $D --addr 127.0.0.1:$PORT --records 2000000 --batch 1000 | grep -E "records/s"
read c2 u2 s2 <<< "$(cpu)"
d() { echo "$1 - $2" | bc; }
echo "  server CPU: produce $(d $c1 $c0) s ($(d $u1 $u0) user + $(d $s1 $s0) system), consume $(d $c2 $c1) s ($(d $u2 $u1) user + $(d $s2 $s1) system)"
kill $PID; wait $PID 2>/dev/null || true
rm -rf $D
