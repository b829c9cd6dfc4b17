"""Designed MPI waits (tests/cli/locks.rs): every rank works T seconds of wall time in
`imbalanced_work`, except rank 2, which works 3T; then all meet at a barrier (the line
marked below). Wall time, not CPU time: rank 2 reaches the barrier 2T after the others
however the ranks share the cores, so each other rank waits there 2T (the designed
imbalance, 6T in all). stderr: each rank's barrier wait as timed here.

    mpirun -n 4 python3 mpi_barrier_waits.py T_SECONDS
"""

import sys
import time

from mpi4py import MPI


def imbalanced_work(seconds):
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
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
