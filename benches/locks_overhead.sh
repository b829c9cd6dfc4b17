#!/bin/bash
# benches/locks_overhead.sh: docs/performance.md, "locks". Build first: cc -O2 benches/mutex_handoff.c -o mutex_handoff -lpthread
# Run as root from a directory uid 65534 can read (it runs the target as that user). Env: N, RUNS, MH, HWPROF, OUT.
# bare / hwprof (uid 65534, agent) / hwprof --python off (uid 65534, switch records only) / perf record sched_switch (root), alternating
N=${N:-100000}
for i in $(seq 1 ${RUNS:-5}); do
  echo -n "bare "; setpriv --reuid=65534 --regid=65534 --clear-groups ${MH:-./mutex_handoff} $N 1000000
  rm -rf ${OUT:-/tmp}/rb; echo -n "hwprof "; setpriv --reuid=65534 --regid=65534 --clear-groups ${HWPROF:-hwprof} collect -q -m locks --no-finalize -r ${OUT:-/tmp}/rb -- ${MH:-./mutex_handoff} $N 1000000 2>/dev/null
  rm -rf ${OUT:-/tmp}/rc; echo -n "hwprof-noagent "; setpriv --reuid=65534 --regid=65534 --clear-groups ${HWPROF:-hwprof} collect -q -m locks --python off --no-finalize -r ${OUT:-/tmp}/rc -- ${MH:-./mutex_handoff} $N 1000000 2>/dev/null
  echo -n "perf-sched "; perf record -q -e sched:sched_switch -g -o ${OUT:-/tmp}/perf.data -- ${MH:-./mutex_handoff} $N 1000000 2>/dev/null
done
