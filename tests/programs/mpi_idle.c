/* Designed idle rank (tests/cli/mpi.rs): ranks other than 3 spend SECONDS of CPU time in
 * compute_kernel(), rank 3 computes nothing and only waits at the barrier. So rank 3 is
 * idle (its useful work ~0) and spends its time in MPI, the others spend little in MPI;
 * compute_kernel's min is 0 on rank 3. CPU time (CLOCK_PROCESS_CPUTIME_ID), so four
 * ranks on two cores still do their share.
 *
 *   mpicc -O2 -g mpi_idle.c -o mpi_idle && mpirun -n 4 ./mpi_idle SECONDS
 */
#include <mpi.h>
#include <stdlib.h>
#include <time.h>

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

__attribute__((noinline)) double compute_kernel(double seconds) {
    volatile double x = 1.0;
    double end = cpu_seconds() + seconds;
    while (cpu_seconds() < end)
        for (int i = 0; i < 100000; i++)
            x = x * 1.0000001 + 1e-9;
    return x;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    int rank;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank != 3)
        compute_kernel(seconds);
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    return 0;
}
