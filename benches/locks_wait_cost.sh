#!/bin/bash
# benches/locks_wait_cost.sh: docs/performance.md, "locks, 17d". Build first:
#   cc -O2 benches/wait_cost.c -o wait_cost -lpthread; cc -O2 benches/mutex_handoff.c -o mutex_handoff -lpthread
# Run as root from a directory uid 65534 can read, OUT writable by it. Env: RUNS, WC, MH, HWPROF, AGENT, OUT.
# 1. CPU time per marked wait (wait_cost: 20,000 waits of 150 us), alternating bare and
#    locks-mode variants (--python off: switch records only; --wait-threshold 1 s: the
#    agent and its breakpoints, no marker fired; --call-graph fp: markers without a stack
#    copy; default).
# 2. Uncontended pthread_mutex_lock+unlock under the agent's interposer (preloaded with
#    waits on, no collector: HWPROF_AGENT_SOCK points nowhere), against bare.
U="setpriv --reuid=65534 --regid=65534 --clear-groups"
WC=${WC:-./wait_cost}; OUT=${OUT:-/tmp}
for i in $(seq 1 ${RUNS:-3}); do
  echo "load $(cut -d' ' -f1 /proc/loadavg)"
  echo -n "bare "; $U $WC 20000
  for v in "--python off" "--wait-threshold 1000000" "--call-graph fp" ""; do
    rm -rf $OUT/rw; echo -n "hwprof [$v] "
    $U ${HWPROF:-hwprof} collect -q -m locks --no-finalize -r $OUT/rw $v -- $WC 20000 2>/dev/null
  done
done
for i in $(seq 1 7); do
  echo "uncontended ns/pair: bare $(${MH:-./mutex_handoff} 4 10000000 | awk '{print $5}')" \
    "agent $(HWPROF_AGENT_SOCK=/nonexistent HWPROF_AGENT_WAITS=100000 LD_PRELOAD=${AGENT:-./libhwprof_agent.so} ${MH:-./mutex_handoff} 4 10000000 | awk '{print $5}')"
done
