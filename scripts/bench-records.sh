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
cpu() { awk '{print ($14+$15)/100}' /proc/$PID/stat; }
echo "== $LABEL"
c0=$(cpu)
# The client's CPU seconds too: on a machine shared with other work, CPU
# per record moves less than records per second.
TIMEFORMAT='  client CPU: %3U s user + %3S s system'
time $BIN bench produce --data-dir $D --addr 127.0.0.1:$PORT --mode stream --batch 100 --records 2000000 "$@" | grep -E "records/s"
c1=$(cpu)
time $BIN bench consume --data-dir $D --addr 127.0.0.1:$PORT --records 2000000 --batch 1000 | grep -E "records/s"
c2=$(cpu)
echo "  server CPU: produce $(echo "$c1 - $c0" | bc) s, consume $(echo "$c2 - $c1" | bc) s"
kill $PID; wait $PID 2>/dev/null || true
rm -rf $D
