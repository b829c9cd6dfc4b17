"""Designed MPI load imbalance (tests/cli/mpi.rs): every rank computes T seconds of CPU
time in `imbalanced_work`, except rank 2, which computes 3T; then all meet at a barrier.
Useful time is T, T, 3T, T: load balance = mean / max = 1.5T / 3T = 0.5, and the
function's imbalance (max - mean) is 1.5T. CPU time (process_time), not wall time, so
four ranks on two cores still do exactly their share.

    mpirun -n 4 python3 mpi_imbalance.py T_SECONDS
"""

import sys
import time

from mpi4py import MPI


def imbalanced_work(seconds):
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        for i in range(2000):
            x += i * i
    return x


def main():
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    t = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    comm.Barrier()
    imbalanced_work(3 * t if rank == 2 else t)
    comm.Barrier()


main()
