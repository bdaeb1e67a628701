#!/bin/sh
# CTest example.prime_stream.<backend>: `seq 1 N` through prime_stream on
# BACKEND (mpi: under LAUNCH, e.g. "mpiexec -n 2") against the seq
# backend's output, byte for byte, and the known count of primes; then a
# bad line ends the stream with exit status 1 and a message. Skipped (77)
# while the backend has no stream (MH_ENOTSUP).
#
#   prime_stream_check.sh EXE BACKEND N PRIMES WORKDIR [LAUNCH...]
set -u
exe=$1 backend=$2 n=$3 primes=$4 work=$5
shift 5

fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$work" || fail "cannot create $work"
want=$work/$backend.want got=$work/$backend.got err=$work/$backend.err
seq 1 "$n" | MANYHANDS_BACKEND=seq "$exe" > "$want" || fail "seq backend exited $?"
seq 1 "$n" | MANYHANDS_BACKEND=$backend "$@" "$exe" > "$got" 2> "$err"
rc=$?
if [ $rc -ne 0 ] && grep -q "^prime_stream: MH_ENOTSUP" "$err"; then
  echo "skipped: $backend has no stream yet (MH_ENOTSUP)"
  exit 77
fi
[ $rc -eq 0 ] || { cat "$err"; fail "$backend exited $rc"; }
[ "$(wc -l < "$got")" -eq "$n" ] || fail "$(wc -l < "$got") lines out of $n"
cmp "$want" "$got" || fail "$backend's output differs from seq's"
count=$(awk '$2 == "prime"' "$got" | wc -l)
[ "$count" -eq "$primes" ] || fail "$count primes up to $n, want $primes"
[ "$(sed -n '97p' "$got")" = "97 prime" ] || fail "line 97: $(sed -n '97p' "$got")"
[ "$(sed -n '91p' "$got")" = "91 not prime" ] || fail "line 91: $(sed -n '91p' "$got")"

# A bad line: the stream ends (MH_ESOURCE), a message, status 1.
{ seq 1 1000; echo 12x; seq 1 1000; } | MANYHANDS_BACKEND=$backend "$@" "$exe" \
  > "$got" 2> "$err" && fail "a bad line did not fail the run"
grep -q 'line 1001: not a 64-bit unsigned number: "12x"' "$err" \
  || { cat "$err"; fail "no message naming the bad line"; }
[ "$(wc -l < "$got")" -le 1000 ] || fail "lines after the bad one were written"
echo "ok: $backend, $n lines, $count primes"
