#!/bin/sh
# examples/checkpoint end to end on one backend:
#   checkpoint_test.sh CHECKPOINT WORK_DIR BACKEND
# 1. a run that sends itself a SIGINT part-way is cancelled (exit 3) and
#    leaves a checkpoint; 2. the next run resumes from it and finishes;
#    its checksum equals a full run's on seq; 3. two SIGINTs from outside:
#    the first cancels, the second kills; no process of the run is left.
set -u
bin=$1 dir=$2 backend=$3 n=20000
mkdir -p "$dir" || exit 1
state=$dir/state.$backend kill_state=$dir/kill.$backend
rm -f "$state" "$kill_state"
fail() { echo "checkpoint_test ($backend): $*"; exit 1; }

full=$("$bin" "$dir/full.$backend" $n seq) || fail "the full run failed"
out=$("$bin" --interrupt-at $((n / 2)) "$state" $n "$backend"); rc=$?
echo "$out"
[ $rc -eq 3 ] || fail "interrupted run: exit $rc, want 3 (cancelled, saved)"
[ -s "$state" ] || fail "no checkpoint written"
out=$("$bin" "$state" $n "$backend") || fail "the resumed run failed"
echo "$out"
case $out in *"(resumed)"*) ;; *) fail "the second run did not resume" ;; esac
[ "${out#*checksum }" = "${full#*checksum }" ] ||
    fail "resumed checksum ${out#*checksum }, full run's ${full#*checksum }"
[ ! -e "$state" ] || fail "the checkpoint is left after success"

"$bin" "$kill_state" 2000000 "$backend" >/dev/null &
pid=$!
sleep 1
kill -INT $pid
sleep 0.01
kill -INT $pid 2>/dev/null
wait $pid; rc=$?
# 130: the second SIGINT killed it; 3: it had already saved and left.
[ $rc -eq 130 ] || [ $rc -eq 3 ] || fail "after two SIGINTs: exit $rc"
sleep 1 # fork's children die with their parent (PDEATHSIG)
if pgrep -f "$kill_state" >/dev/null; then
    fail "a process of the killed run is left"
fi
rm -f "$kill_state"
echo "checkpoint_test ($backend): ok (second SIGINT: exit $rc)"
