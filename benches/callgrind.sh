#!/usr/bin/env bash
# Instructions per echoed message, stdws vs tungstenite, counted by valgrind's callgrind
# (repeatable on a noisy machine, unlike time).
#
#   benches/callgrind.sh [FILTER]
#
# For each scenario of benches/echo.rs it runs the echo loop twice with different message
# counts and reports (I(n2) - I(n1)) / (n2 - n1): setup and teardown cancel out, and only
# instructions inside the echo loop are collected (--toggle-collect).
#
# glibc's memcpy/memset use `rep movsb`/`rep stosb` on CPUs with ERMS/FSRM, which valgrind
# counts as ONE instruction however many bytes move. GLIBC_TUNABLES below turns those paths
# off so copies are counted as the vector loops they would otherwise be, fairly for both
# libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
FILTER=${1:-}
export GLIBC_TUNABLES=glibc.cpu.hwcaps=-ERMS,-FSRM
command -v valgrind >/dev/null || { echo "callgrind.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
BIN=$(cargo bench --bench echo --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m["target"]["name"] == "echo": print(m["executable"])' | tail -1)

instructions() { # IMPL SCENARIO COUNT
  ECHO_BENCH="$1 $2 $3" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    --toggle-collect="*run_$1*" "$BIN" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

counts() { # SCENARIO -> "n1 n2"
  case $1 in
    *" 16B "*) echo "2000 12000" ;;
    *" 1KiB "*) echo "500 3000" ;;
    *" 64KiB "*) echo "10 60" ;;
    *) echo "2 10" ;;
  esac
}

mapfile -t SCENARIOS < <(ECHO_LIST=1 "$BIN")
printf '%-28s %12s %14s %7s\n' "scenario" "stdws" "tungstenite" "ratio"
for s in "${SCENARIOS[@]}"; do
  [[ -z $FILTER || $s == *"$FILTER"* ]] || continue
  read -r n1 n2 <<<"$(counts "$s")"
  per=()
  for impl in stdws tungstenite; do
    a=$(instructions "$impl" "$s" "$n1")
    b=$(instructions "$impl" "$s" "$n2")
    per+=($(( (b - a) / (n2 - n1) )))
  done
  printf '%-28s %12d %14d %7.2f\n' "$s" "${per[0]}" "${per[1]}" "$(echo "${per[0]} / ${per[1]}" | bc -l)"
done
