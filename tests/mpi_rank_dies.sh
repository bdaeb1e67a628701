#!/bin/sh
# A rank of a 2-rank mpi job kills itself (SIGKILL) in the middle of a
# map; the job must end on its own, quickly, with an error that names the
# dead rank: never a hang. Open MPI's mpiexec does that: it sees the rank
# die and kills the others, which are waiting in MPI for it.
#
#   mpi_rank_dies.sh MPIEXEC NUMPROC_FLAG BINARY TEST [PATTERN]
#
# PATTERN (grep -E) must occur in the output: by default the rank killed
# by signal 9.
set -u
limit=60
start=$(date +%s)
out=$(timeout -k 5 "$limit" "$1" "$2" 2 "$3" "$4" mpi 2 2>&1)
rc=$?
took=$(( $(date +%s) - start ))
printf '%s\n' "$out"
echo "mpiexec exit status $rc after ${took} s"
# 124: timeout stopped it (137, its KILL, is also mpiexec's own status
# for a rank killed by signal 9: the time tells them apart).
if [ "$rc" -eq 124 ] || [ "$took" -ge "$limit" ]; then
  echo "FAIL: the job was still running after ${limit} s (a hang)"
  exit 1
fi
if [ "$rc" -eq 0 ]; then
  echo "FAIL: the job reported success with a rank dead"
  exit 1
fi
pattern=${5:-exited on signal 9}
if ! printf '%s\n' "$out" | grep -Eq "$pattern"; then
  echo "FAIL: no word of the dead rank (\"$pattern\")"
  exit 1
fi
echo "ok: the job ended in ${took} s with status $rc"
