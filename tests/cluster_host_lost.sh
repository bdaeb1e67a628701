#!/bin/sh
# A host of a simulated cluster (scripts/cluster, 2 hosts x 1 rank) is
# lost in the middle of a long map: rank 0 must end with an error that
# says so within 30 s, and no process or namespace of the cluster may be
# left. The single-host version is mpi_rank_dies.sh.
#
#   cluster_host_lost.sh CLUSTER_SCRIPT BINARY HOW
#
# HOW: kill  - every process in host 1's namespace gets SIGKILL (its
#              orted and its rank: a crashed host)
#      down  - host 1's link is set down (a pulled cable); the job is run
#              with TCP keepalive on Open MPI's out-of-band channel
#              short enough (5 s idle, 3 probes 2 s apart) to notice
set -u
cluster=$1 binary=$2 how=$3
limit=30
work=$(mktemp -d /tmp/mhc-lost.XXXXXX) || exit 1
trap 'rm -rf "$work"' EXIT
export MH_CLUSTER_MARK="$work/started"

# Lose host 1 a second after rank 0 starts the map; note when.
case $how in
kill) lose='for p in $(ip netns pids "$ns"); do kill -KILL "$p"; done' ;;
down) lose='ip -n "$ns" link set eth0 down'
      export OMPI_MCA_oob_tcp_keepalive_time=5 OMPI_MCA_oob_tcp_keepalive_intvl=2
      export OMPI_MCA_oob_tcp_keepalive_probes=3 ;;
*) echo "usage: cluster_host_lost.sh CLUSTER_SCRIPT BINARY kill|down" >&2; exit 2 ;;
esac
killer="echo \$MH_CLUSTER_NS > '$work/ns'; set -- \$MH_CLUSTER_NS; ns=\$2; i=0
while [ ! -e '$MH_CLUSTER_MARK' ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i + 1)); done
sleep 1; for n; do ip netns pids \$n; done > '$work/pids'
date +%s.%N > '$work/lost'; $lose"

start=$(date +%s)
timeout -k 5 120 "$cluster" --on-start "$killer" 2 1 "$binary" host_lost mpi 2 \
  >"$work/out" 2>&1
rc=$?
end=$(date +%s.%N)
cat "$work/out"
echo "the job's exit status: $rc, $(( $(date +%s) - start )) s in all"
if [ "$rc" -eq 77 ]; then
  exit 77 # the script said why
fi
if [ ! -e "$work/lost" ]; then
  echo "FAIL: the map never started (no host was lost)"
  exit 1
fi
took=$(awk -v a="$(cat "$work/lost")" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
echo "host 1 lost ($how); the job ended ${took} s later"
status=0
if [ "$rc" -eq 0 ]; then
  echo "FAIL: the job reported success with a host lost"
  status=1
fi
if awk -v t="$took" -v l="$limit" 'BEGIN { exit !(t >= l) }'; then
  echo "FAIL: the error came after ${took} s (limit ${limit} s)"
  status=1
fi
# What Open MPI says when a host's daemon goes: it names the lost node.
if ! grep -Eq "lost communication with a remote daemon|daemon .* (died|lost)|exited on signal 9" \
  "$work/out"; then
  echo "FAIL: no word of the lost host in the job's output"
  status=1
fi
# The cluster script removes its namespaces on exit: none of this run's
# (named mhc<its pid>...) may be listed.
tag=$(sed 's/h0 .*//; s/h0$//' "$work/ns")
left=$(ip netns list 2>/dev/null | grep -c "^${tag}[sh]" || true)
# Every process that was in the cluster's hosts when the map ran is gone
# (a zombie is gone: it waits only for init to reap it).
leftp=0
for p in $(cat "$work/pids"); do
  st=$(ps -o stat= -p "$p" 2>/dev/null)
  case $st in
  '' | Z*) ;;
  *) leftp=$((leftp + 1)); ps -o pid,stat,args -p "$p" | tail -n +2 ;;
  esac
done
if [ "$leftp" -ne 0 ]; then
  echo "FAIL: $leftp process(es) of the cluster left"
  status=1
fi
if [ "$left" -ne 0 ]; then
  echo "FAIL: $left namespace(s) of this run ($tag) left"
  status=1
fi
[ "$status" -eq 0 ] && echo "ok: host 1 lost ($how), error after ${took} s, nothing left"
exit "$status"
