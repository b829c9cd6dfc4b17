/* Designed MPI waits under another PMPI tool (tests/cli/locks.rs): every rank makes
 * RECVS ring exchanges (MPI_Send to the next rank, MPI_Recv from the previous one) and
 * 2 MPI_Barrier calls. Between the barriers every rank works T seconds of wall time,
 * except rank 2, which works 3T: so each other rank waits 2T in `meet_at_barrier`
 * (6T in all with 4 ranks). stderr: each rank's barrier wait as timed here.
 *
 *   mpicc -O2 -g mpi_tool_imbalance.c -o mpi_tool_imbalance
 *   mpirun -n 4 ./mpi_tool_imbalance T_SECONDS
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RECVS 3

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Wall time, not CPU time: rank 2 arrives 2T after the others however the four
 * ranks share the cores. */
__attribute__((noinline)) double imbalanced_work(double seconds) {
    volatile double x = 1.0;
    double end = now() + seconds;
    while (now() < end)
        for (int i = 0; i < 10000; i++)
            x = x * 1.0000001 + 1e-9;
    return x;
}

__attribute__((noinline)) double meet_at_barrier(void) {
    double t0 = now();
    MPI_Barrier(MPI_COMM_WORLD);
    return now() - t0;
}

int main(int argc, char **argv) {
    double t = argc > 1 ? atof(argv[1]) : 0.4;
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Barrier(MPI_COMM_WORLD);
    int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    for (int i = 0; i < RECVS; i++) {
        int out = rank * 100 + i, in = -1;
        /* Even ranks send first, odd ranks receive first: no cycle of sends. */
        if (rank % 2 == 0) {
            MPI_Send(&out, 1, MPI_INT, next, i, MPI_COMM_WORLD);
            MPI_Recv(&in, 1, MPI_INT, prev, i, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(&in, 1, MPI_INT, prev, i, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(&out, 1, MPI_INT, next, i, MPI_COMM_WORLD);
        }
        if (in != prev * 100 + i)
            return 3;
    }
    imbalanced_work(rank == 2 ? 3 * t : t);
    double waited = meet_at_barrier();
    fprintf(stderr, "rank %d barrier %.6f\n", rank, waited);
    MPI_Finalize();
    return 0;
}
