#!/bin/bash
# bench-keyed.sh BASE NEW [ROUNDS]: issue 11's throughput target, measured
# in alternating rounds of bench-records.sh: BASE's plain records (100 B
# values) against NEW's keyed ones (the same values, a 16 B key and two
# small headers). Prints each round's ratios, keyed / plain records/s for
# produce and consume, then their medians. One round takes ~15 s; on a
# shared two-core machine single rounds swing by a third, so judge the
# medians of many. Each round also prints the servers' CPU seconds. The
# two take turns going first: this VM hands memory freed for more than a
# second or two back to its host, and a run that follows another takes
# some of the page cache that run freed before it is handed back, at a
# tenth of the cost of new pages (docs/benchmarks.md, session 12), so
# whichever always went second would be favoured.
set -e
BASE=$1; NEW=$2; ROUNDS=${3:-7}
HERE=$(dirname "$0")
rate() { grep -o '[0-9]* records/s' | awk '{print $1}'; }
P=(); C=()
for i in $(seq "$ROUNDS"); do
	if ((i % 2)); then
		base=$(bash "$HERE/bench-records.sh" "$BASE" plain 2>&1)
		new=$(bash "$HERE/bench-records.sh" "$NEW" keyed --key-size 16 --headers 2 2>&1)
	else
		new=$(bash "$HERE/bench-records.sh" "$NEW" keyed --key-size 16 --headers 2 2>&1)
		base=$(bash "$HERE/bench-records.sh" "$BASE" plain 2>&1)
	fi
	read bp bc <<< "$(rate <<< "$base" | xargs)"
	read np nc <<< "$(rate <<< "$new" | xargs)"
	echo "$base" | grep "server CPU" | sed 's/^ */  plain /'
	echo "$new" | grep "server CPU" | sed 's/^ */  keyed /'
	p=$(echo "scale=3; $np / $bp" | bc); c=$(echo "scale=3; $nc / $bc" | bc)
	echo "round $i: plain produce $bp consume $bc; keyed produce $np consume $nc; ratio produce $p consume $c"
	P+=("$p"); C+=("$c")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "median ratio over $ROUNDS rounds: produce $(median "${P[@]}"), consume $(median "${C[@]}")"
