#!/bin/sh
# manyhands-bench, run whole (CTest: bench.schema, bench.smoke, bench.stream,
# bench.bad_options).
#
#   bench_run.sh MODE BENCH CHECKER CSV_MD WORKDIR
#
#   schema       a small seed run (library backends and the peers: Python,
#                raw-openmp) and a small matrix; every CSV checked against
#                docs/csv.md
#   smoke        `--quick` over every backend and kernel: schema, every row
#                verified, plots drawn (when gnuplot is installed)
#   stream       `stream --quick`: every kind's rows verified, and a lost
#                item (MHB_CORRUPT=1) failing map and stream cells
#   bad_options  each bad command line exits 2 with a message, nothing run
#   cluster      `cluster --quick` (root only: 77 otherwise): every row
#                verified, and the network CSV counts messages and bytes
#                on 2 and 4 hosts and none on 1
#   peer         bench_run.sh peer ... WORKDIR NAME COMMAND KERNEL [corrupt]:
#                the peer NAME on KERNEL through the harness: its rows in
#                the CSV, every one verified; with `corrupt`, again with
#                MHB_CORRUPT=1 (each runner makes its first output wrong):
#                the run must fail and the peer's rows say verified=0 with
#                an error. Exit 77 (skipped) when the harness skips the peer.
set -u
mode=$1 bench=$2 checker=$3 csv_md=$4 work=$5

fail() { echo "FAIL: $*" >&2; exit 1; }

# manyhands-bench "$@" --out $work into $work/out, shown; fails on a
# non-zero exit.
bench_ok() {
  "$bench" "$@" --out "$work" > "$work/out" 2>&1
  rc=$?
  cat "$work/out"
  [ $rc -eq 0 ] || fail "manyhands-bench $* exited $rc"
}

# Library backends this build has besides seq (MH_BACKENDS, comma-separated,
# set by CTest): with none, the matrix has only seq's rows and no speedup
# curve to draw.
parallel=$(echo "${MH_BACKENDS:?MH_BACKENDS not set}" | tr ',' '\n' | grep -vc '^seq$')

rm -rf "$work"
mkdir -p "$work" || fail "cannot create $work"

case $mode in
schema)
  "$bench" seed --quick --workers 1,2 --repeat 1 --out "$work" --label t --no-plot \
    > "$work/seed.out" 2>&1 || { cat "$work/seed.out"; fail "seed run failed"; }
  grep -q "^Processes: 2, Seconds: [0-9]" "$work/seed.out" || fail "no blog line in the seed output"
  "$bench" matrix --quick --kernels sleep,factorial --repeat 2 --out "$work" --label t \
    --no-plot > "$work/matrix.out" 2>&1 || { cat "$work/matrix.out"; fail "matrix run failed"; }
  set -- "$work"/t/*-seed.csv "$work"/t/*-matrix.csv
  [ -f "$1" ] && [ -f "$2" ] || fail "CSV files missing: $*"
  "$checker" "$csv_md" "$@" || fail "schema"
  # 2 kernels x 2 repeats: seq at 1 worker, each other backend at 1..2x cores.
  rows=$(($(wc -l < "$2") - 1))
  want=$((4 + 8 * parallel))
  [ "$rows" -ge "$want" ] || fail "only $rows matrix rows, want at least $want"
  "$checker" --verified "$csv_md" "$2" || fail "a library run was not verified"
  # The checker must catch what it is there to catch.
  bad=$work/bad.csv
  sed '1s/,workers,/,worker_count,/' "$2" > "$bad"
  "$checker" "$csv_md" "$bad" 2> /dev/null && fail "checker took a renamed column"
  sed '2s/,cpu,/,gpu,/' "$2" > "$bad"
  "$checker" "$csv_md" "$bad" 2> /dev/null && fail "checker took a bad enum value"
  sed '3s/,[0-9][0-9]*,[0-9][0-9]*,[0-9][0-9]*,/,x,1,1,/' "$2" > "$bad"
  "$checker" "$csv_md" "$bad" 2> /dev/null && fail "checker took a non-integer"
  sed '2s/,$/,extra/; 2s/,1,extra$/,0,map:MH_EWORKER/' "$2" > "$bad"
  "$checker" --verified "$csv_md" "$bad" 2> /dev/null && fail "checker took a failed run"
  head -1 "$2" > "$bad"
  "$checker" "$csv_md" "$bad" 2> /dev/null && fail "checker took a file without rows"
  ;;
smoke)
  bench_ok --quick --label smoke
  set -- "$work"/smoke/*-matrix.csv
  [ -f "$1" ] || fail "no CSV"
  "$checker" --verified "$csv_md" "$1" || fail "schema or verification"
  grep -q "^Verdict" "$work/out" || fail "no summary"
  if command -v gnuplot > /dev/null; then
    base=${1%.csv}
    plots="$base-bound.png $base-bound.svg"
    [ "$parallel" -gt 0 ] && plots="$plots $base-factorial.png $base-sleep.svg"
    for f in $plots; do
      [ -s "$f" ] || fail "plot $f missing"
    done
  else
    echo "gnuplot not installed: plots not checked"
  fi
  ;;
cluster)
  [ "$(id -u)" -eq 0 ] || { echo "skipped: the cluster experiment needs root"; exit 77; }
  bench_ok cluster --quick --label t
  set -- "$work"/t/*-cluster.csv "$work"/t/*-cluster-net.csv
  [ -f "$1" ] && [ -f "$2" ] || fail "CSV files missing: $*"
  "$checker" --verified "$csv_md" "$1" || fail "schema or verification"
  # kernel,hosts,...,messages (9),bytes (10): 2 kernels x hosts 1, 2, 4.
  awk -F, 'NR > 1 { n++; if ($2 == 1 ? $9 != 0 : ($9 < 4 || $10 < $4)) bad++ }
    END { exit !(n == 6 && !bad) }' "$2" || { cat "$2"; fail "network counts"; }
  ;;
stream)
  # `stream --quick`: every kind on every backend whose stream works, each
  # row verified; every kind has a seq row and a row of another backend;
  # then a lost item must fail its cell, for a map and a stream alike.
  bench_ok stream --quick --label t
  set -- "$work"/t/*-stream.csv
  [ -f "$1" ] || fail "no CSV"
  "$checker" --verified "$csv_md" "$1" || fail "schema or verification"
  grep -q "^Figures" "$work/out" || fail "no figures in the summary"
  # Columns by name: $b backend, $k kernel, $v verified.
  cols='NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "backend") b = i;
    if ($i == "kernel") k = i; if ($i == "verified") v = i }; next }'
  # jobs, sleep and the copy's stream run on fork and threads alone, the
  # copy's map on threads alone: another backend's row only where built.
  has() { case ",$MH_BACKENDS," in *",$1,"*) return 0 ;; esac; return 1; }
  fork_or_threads=0
  if has fork || has threads; then fork_or_threads=1; fi
  for kind in factorial:map factorial:stream factorial:as-completed empty:map empty:stream \
      jobs:maps jobs:stream sleep:map sleep:stream copy:map copy:stream; do
    case $kind in
      jobs:* | sleep:* | copy:stream) others=$fork_or_threads ;;
      copy:map) others=0; if has threads; then others=1; fi ;;
      *) others=$parallel ;;
    esac
    awk -F, -v want="$kind" -v parallel="$others" "$cols"'
      $k == want { if ($b == "seq") s++; else o++ }
      END { exit !(s >= 1 && (o >= 1 || parallel == 0)) }' "$1" \
      || fail "no seq row or no other backend's row of $kind"
  done
  MHB_CORRUPT=1 "$bench" stream --quick --kernels empty:map,copy:stream,factorial:stream \
    --backends seq --out "$work" --label bad > "$work/bad.out" 2>&1 \
    && { cat "$work/bad.out"; fail "a lost item did not fail the run"; }
  set -- "$work"/bad/*-stream.csv
  awk -F, "$cols"' { n++; if ($v != 0) bad++ } END { exit !(n >= 3 && !bad) }' "$1" \
    || { cat "$1"; fail "a row with a lost item says verified"; }
  ;;
bad_options)
  check_bad() {
    out=$("$bench" "$@" 2> "$work/err")
    rc=$?
    [ $rc -eq 2 ] || fail "'$*' exited $rc, want 2"
    [ -z "$out" ] || fail "'$*' wrote to stdout: $out"
    grep -q "^manyhands-bench: " "$work/err" || fail "'$*' gave no message"
    grep -q "Try 'manyhands-bench --help'" "$work/err" || fail "'$*' gave no hint"
  }
  check_bad --workers 0
  check_bad --workers 1,x
  check_bad --repeat 0
  check_bad --scale -1
  check_bad --backends no-such-backend
  check_bad --kernels no-such-kernel
  check_bad --label ../escape
  check_bad --quick=yes
  check_bad --frobnicate
  check_bad frobnicate
  check_bad --items
  check_bad cell --backends seq --kernels sleep
  check_bad stream --kernels sleep
  check_bad matrix --kernels empty:stream
  "$bench" --help > "$work/help" 2>&1 || fail "--help exited non-zero"
  grep -q "^usage: manyhands-bench" "$work/help" || fail "--help printed no usage"
  ;;
peer)
  name=$6 command=$7 kernel=$8 corrupt=${9:-}
  # The value of column $2 in every row of CSV $1 whose backend is $name.
  column() {
    awk -F, -v want="$2" -v name="$name" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == want) c = i;
      for (i = 1; i <= NF; i++) if ($i == "backend") b = i; next } $b == name { print $c }' "$1"
  }
  run_peer() {
    "$bench" "$command" --quick --kernels "$kernel" --workers 2 --backends "$name" --repeat 1 \
      --out "$work" --label "$1" --no-plot > "$work/$1.out" 2>&1
  }
  run_peer ok
  rc=$?
  if grep -q "skipped (not available here):.*$name" "$work/ok.out"; then
    grep "skipped" "$work/ok.out"
    exit 77
  fi
  [ $rc -eq 0 ] || { cat "$work/ok.out"; fail "$name on $kernel exited $rc"; }
  set -- "$work"/ok/*-"$command".csv
  "$checker" --verified "$csv_md" "$1" || fail "schema or verification"
  [ "$(column "$1" verified | sort -u)" = 1 ] || fail "no verified row of $name in $1"
  if [ -n "$corrupt" ]; then
    MHB_CORRUPT=1 run_peer corrupt
    rc=$?
    [ $rc -eq 1 ] || { cat "$work/corrupt.out"; fail "a wrong result of $name: exit $rc, want 1"; }
    set -- "$work"/corrupt/*-"$command".csv
    "$checker" "$csv_md" "$1" || fail "schema"
    [ "$(column "$1" verified | sort -u)" = 0 ] || fail "$name's wrong rows not marked verified=0"
    column "$1" error | grep -q . || fail "$name's wrong rows give no error"
    column "$1" error | grep -v . && fail "a wrong row of $name without an error"
  fi
  ;;
*)
  fail "unknown mode $mode"
  ;;
esac
echo "ok: $mode"
