#!/usr/bin/env bash
# Runs cargo-fuzz targets for a bounded time each and prints executions per target: `make fuzz`.
#
#   fuzz/run.sh [TARGET...]        (default: every fuzz_targets/*.rs)
#   FUZZ_SECONDS=30 FUZZ_SANITIZER=none FUZZ_ARGS="-jobs=2" fuzz/run.sh report
#
# Seeds are the committed fuzz/corpus/<target>/ files; libFuzzer writes what it finds to the
# git-ignored fuzz/work/<target>/, never to the committed corpus. Committed crash-* inputs are not
# fed to the fuzzer (a crashing seed would stop it before it fuzzes): each is run once on its own
# and reported while it still fails. Exits non-zero on a new crash or a still-failing crash-* input.
set -uo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-30}
sanitizer=${FUZZ_SANITIZER:-none}
read -r -a extra <<<"${FUZZ_ARGS:-}"
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

fuzz() { rustup run nightly cargo fuzz "$@"; }

mkdir -p logs
fuzz build --sanitizer "$sanitizer" >logs/build.log 2>&1 || { cat logs/build.log; exit 1; }
status=0
rows=()
for t in "${targets[@]}"; do
  rm -rf "work/$t.seeds"
  mkdir -p "work/$t" "work/$t.seeds"
  known=0 failing=0
  for f in "corpus/$t"/*; do
    [ -f "$f" ] || continue
    case "$(basename "$f")" in
      crash-*)
        known=$((known + 1))
        if ! fuzz run --sanitizer "$sanitizer" "$t" "$f" >"logs/$t.known.log" 2>&1; then
          failing=$((failing + 1))
          echo "$t: committed $f still fails: $(grep -m1 -A1 'panicked at' "logs/$t.known.log" | tail -1)"
        fi
        ;;
      *) cp "$f" "work/$t.seeds/" ;;
    esac
  done
  echo "== $t: $seconds s"
  if fuzz run --sanitizer "$sanitizer" "$t" "work/$t" "work/$t.seeds" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${extra[@]}" >"logs/$t.log" 2>&1; then
    result=ok
  else
    result=CRASH
    grep -m1 -A1 'panicked at' "logs/$t.log"
    grep -m1 -o 'Test unit written to .*' "logs/$t.log"
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "logs/$t.log" | tail -1)
  [ "$result" = ok ] && [ "$failing" = 0 ] || status=1
  rows+=("$(printf '%-18s %14s  %-6s %s' "$t" "${execs:-?}" "$result" "$failing of $known")")
done

printf '\n%-18s %14s  %-6s %s\n' target executions result "committed crash-* still failing"
printf '%s\n' "${rows[@]}"
[ "$status" = 0 ] || echo "logs: fuzz/logs/<target>.log; new crash inputs: fuzz/artifacts/<target>/"
exit "$status"
