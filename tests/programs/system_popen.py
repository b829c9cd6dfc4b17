"""os.system and os.popen in a loop, with Python work between (tests/cli/agent_stress.rs).
glibc's system() spawns through glibc's internal posix_spawn, not the symbol the agent
interposes: a sample taken in the child before its exec killed it with SIGTRAP (exit
status 5). Failures are counted on stderr; stdout is the same as a bare run's."""
import os, sys
n = int(sys.argv[1])
def work():
    s = 0
    for i in range(30000):
        s += i % 7
    return s
bad_system = bad_popen = 0
total = 0
for r in range(n):
    total += work()
    st = os.system("echo sys %d > /dev/null" % r)
    if st != 0:
        bad_system += 1
        sys.stderr.write("system round %d: status %d\n" % (r, st))
    with os.popen("echo pop %d" % r) as p:
        out = p.read()
    if out != "pop %d\n" % r:
        bad_popen += 1
        sys.stderr.write("popen round %d: %r\n" % (r, out))
print("rounds", n, "total", total)
sys.stderr.write("system failures: %d, popen failures: %d\n" % (bad_system, bad_popen))
