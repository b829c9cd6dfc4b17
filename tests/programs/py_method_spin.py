# The remote reader's test (tests/cli/python.rs): `outer` calls the method `Inner.spin`,
# which spins for ever; "ready" on stdout once it is about to. A read from outside must
# find `Inner.spin` under `outer` under `<module>`, on each CPython version.
import sys


class Inner:
    def spin(self):
        while True:
            x = sum(range(1000))


def outer():
    Inner().spin()


sys.stdout.write("ready\n")
sys.stdout.flush()
outer()
