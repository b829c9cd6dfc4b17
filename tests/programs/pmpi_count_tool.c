/* A PMPI tool as mpiP or Score-P are (tests/cli/locks.rs): a shared library that
 * defines MPI_Barrier and MPI_Recv, counts its calls and passes them on to PMPI_*, and
 * prints the counts at MPI_Finalize: "tool rank R MPI_Barrier B MPI_Recv N" on stderr.
 * Preloaded with hwprof's agent, in either order, it must see every call the program
 * makes.
 *
 *   mpicc -O2 -g -shared -fPIC pmpi_count_tool.c -o libpmpi_count.so
 */
#include <mpi.h>
#include <stdio.h>

static long barriers, recvs;

int MPI_Barrier(MPI_Comm comm) {
    barriers++;
    return PMPI_Barrier(comm);
}

int MPI_Recv(void *buf, int count, MPI_Datatype type, int source, int tag, MPI_Comm comm,
             MPI_Status *status) {
    recvs++;
    return PMPI_Recv(buf, count, type, source, tag, comm, status);
}

int MPI_Finalize(void) {
    int rank = -1;
    PMPI_Comm_rank(MPI_COMM_WORLD, &rank);
    fprintf(stderr, "tool rank %d MPI_Barrier %ld MPI_Recv %ld\n", rank, barriers, recvs);
    return PMPI_Finalize();
}
