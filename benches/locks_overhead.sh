#!/bin/bash
# benches/locks_overhead.sh: docs/performance.md, "locks". Build first: cc -O2 benches/mutex_handoff.c -o mutex_handoff -lpthread
# Run as root from a directory uid 65534 can read (it runs the target as that user). Env: N, RUNS, MH, HWPROF, OUT;
# MAIN: another hwprof binary (main's) run the same way in the same loop; PY (a python3) and GIL
# (benches/gil_contend.py): the same variants on 4 Python threads contending for the GIL.
# bare / hwprof (uid 65534, agent) / hwprof --python off (uid 65534, switch records only) / perf record sched_switch (root)
# / perf trace -s (root: every system call traced, the futexes included), alternating
# Each line is the target's own: wall time and its CPU time (getrusage: holds under load).
N=${N:-100000}; U="setpriv --reuid=65534 --regid=65534 --clear-groups"; OUT=${OUT:-/tmp}
variants() { # $1: the target command
  echo -n "bare "; $U $1
  for h in ${HWPROF:-hwprof} $MAIN; do
    rm -rf $OUT/rb; echo -n "$h "; $U $h collect -q -m locks --no-finalize -r $OUT/rb -- $1 2>/dev/null
    rm -rf $OUT/rc; echo -n "$h-noagent "; $U $h collect -q -m locks --python off --no-finalize -r $OUT/rc -- $1 2>/dev/null
  done
  echo -n "perf-sched "; perf record -q -e sched:sched_switch -g -o $OUT/perf.data -- $1 2>/dev/null
  echo -n "perf-trace "; perf trace -s -o $OUT/trace.txt -- $1 2>/dev/null
}
for i in $(seq 1 ${RUNS:-5}); do
  echo "load $(cut -d' ' -f1 /proc/loadavg)"
  variants "${MH:-./mutex_handoff} $N 1000000"
  [ -n "$PY" ] && variants "$PY ${GIL:-./gil_contend.py}"
done
