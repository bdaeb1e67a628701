#!/bin/sh
# evloop_check.sh RC PATTERN PROGRAM [ARGS...]: run PROGRAM; pass when it
# exits with RC and its output (stdout and stderr) has a line matching the
# extended regex PATTERN. An exit of 77 (what this build lacks) is passed
# on as a skip unless RC is 77.
want=$1
pattern=$2
shift 2
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -eq 77 ] && [ "$want" -ne 77 ]; then
  exit 77
fi
if [ "$rc" -ne "$want" ]; then
  echo "evloop_check: exit status $rc, expected $want"
  exit 1
fi
if ! printf '%s\n' "$out" | grep -Eq -- "$pattern"; then
  echo "evloop_check: no line matches: $pattern"
  exit 1
fi
