"""Designed MPI load imbalance: every rank works T seconds in `imbalanced_work`, except
rank 2, which works 3T; then all meet at a barrier (the line marked below).

- `cpu` (the default; tests/cli/mpi.rs): T seconds of CPU time (process_time), so four
  ranks on two cores still do exactly their share. Useful time is T, T, 3T, T: load
  balance = mean / max = 1.5T / 3T = 0.5, and the function's imbalance (max - mean) is
  1.5T.
- `wall` (tests/cli/locks.rs): T seconds of wall time, so rank 2 reaches the barrier 2T
  after the others however the ranks share the cores, and each other rank waits there
  2T (the designed imbalance, 6T in all).

stderr: each rank's barrier wait as timed here.

    mpirun -n 4 python3 mpi_imbalance.py T_SECONDS [cpu|wall]
"""

import sys
import time

from mpi4py import MPI

clock = time.monotonic if sys.argv[2:3] == ["wall"] else time.process_time


def imbalanced_work(seconds):
    end = clock() + seconds
    x = 0
    while clock() < end:
        for i in range(2000):
            x += i * i
    return x


def main():
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    t = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    comm.Barrier()
    imbalanced_work(3 * t if rank == 2 else t)
    t0 = time.monotonic()
    comm.Barrier()  # the barrier line
    print(f"rank {rank} barrier {time.monotonic() - t0:.6f}", file=sys.stderr)


main()
