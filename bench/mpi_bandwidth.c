/* The reference for the Deno collectives' bandwidth: plain MPI_Allreduce / MPI_Allgather loops.
 * Usage: mpirun -np P mpi_bandwidth BYTES ITERS — prints one JSON line per collective on rank 0. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  long bytes = atol(argv[1]);
  int iters = atoi(argv[2]);
  int n = (int)(bytes / 4);
  float *buf = malloc((size_t)n * 4 * size);
  float *out = malloc((size_t)n * 4 * size);
  int *counts = malloc(sizeof(int) * size), *displs = malloc(sizeof(int) * size);
  for (int r = 0; r < size; r++) { /* even blocks, as the Deno side splits them */
    displs[r] = (int)((long)n * r / size);
    counts[r] = (int)((long)n * (r + 1) / size) - displs[r];
  }
  for (int i = 0; i < n; i++) buf[i] = (float)(i % 97);
  /* all-reduce of n floats; the same as reduce-scatter + in-place all-gather (our deterministic
     all-reduce); all-gather of n / size floats per rank (n in total) */
  for (int pass = 0; pass < 3; pass++) {
    double t0 = 0;
    for (int i = -5; i < iters; i++) { /* 5 untimed warm-up calls */
      if (i == 0) {
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
      }
      if (pass == 0) MPI_Allreduce(buf, out, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      else if (pass == 1) {
        MPI_Reduce_scatter(buf, out + displs[rank], counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        MPI_Allgatherv(MPI_IN_PLACE, counts[rank], MPI_FLOAT, out, counts, displs, MPI_FLOAT,
                       MPI_COMM_WORLD);
      } else MPI_Allgather(buf, n / size, MPI_FLOAT, out, n / size, MPI_FLOAT, MPI_COMM_WORLD);
    }
    double dt = (MPI_Wtime() - t0) / iters;
    if (rank == 0)
      printf("{\"impl\":\"C\",\"op\":\"%s\",\"bytes\":%ld,\"seconds\":%.9f}\n",
             pass == 0 ? "allreduce" : pass == 1 ? "rs-ag" : "allgather", bytes, dt);
  }
  free(buf);
  free(out);
  free(counts);
  free(displs);
  MPI_Finalize();
  return 0;
}
