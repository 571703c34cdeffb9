/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* An MPI one-sided program that knows nothing of mrlease, for the hook's
 * proof: each rank maps DIR/win.RANK (MAP_SHARED, its whole size), exposes it
 * with MPI_Win_create, and streams verified MPI_Put + MPI_Get of 4 KiB blocks
 * at the other rank's window (passive target, flushed per operation) until
 * STOPFILE exists. Blocks below byte STRICT are never punched or truncated by
 * the tests: there, a read-back that differs from what was put is a lost
 * write. Errors are returned, not fatal (MPI_ERRORS_RETURN), and counted.
 *   mpi_win DIR STRICT STOPFILE
 * Each rank prints "stats rank R pass P ok N errors E strict_bad S other_bad O"
 * per pass and "final rank R ..." at the end. */
#include <fcntl.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLK 4096

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	int rank, size;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if (argc != 4 || size != 2) {
		if (!rank)
			fprintf(stderr, "usage: mpirun -np 2 mpi_win DIR STRICT STOPFILE\n");
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/win.%d", argv[1], rank);
	uint64_t strict = strtoull(argv[2], NULL, 0);
	const char *stop = argv[3];
	int fd = open(path, O_RDWR);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		perror(path);
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	size_t len = (size_t)st.st_size;
	void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		perror("mmap");
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	close(fd);
	MPI_Win win;
	MPI_Win_create(base, (MPI_Aint)len, 1, MPI_INFO_NULL, MPI_COMM_WORLD, &win);
	MPI_Win_set_errhandler(win, MPI_ERRORS_RETURN);
	uint64_t *out = malloc(BLK), *in = malloc(BLK);
	int peer = 1 - rank;
	uint64_t nblk = len / BLK, seq = (uint64_t)rank << 40;
	uint64_t ok = 0, errs = 0, strict_bad = 0, other_bad = 0, pass = 0;
	MPI_Win_lock_all(0, win);
	printf("streaming rank %d blocks %llu\n", rank, (unsigned long long)nblk);
	fflush(stdout);
	while (access(stop, F_OK) != 0) {
		for (uint64_t b = 0; b < nblk; b++) {
			MPI_Aint off = (MPI_Aint)(b * BLK);
			seq++;
			for (size_t i = 0; i < BLK / 8; i++)
				out[i] = seq * 1000003 + i;
			memset(in, 0, BLK);
			int e = MPI_Put(out, BLK, MPI_BYTE, peer, off, BLK, MPI_BYTE, win);
			if (e == MPI_SUCCESS)
				e = MPI_Win_flush(peer, win);
			if (e == MPI_SUCCESS)
				e = MPI_Get(in, BLK, MPI_BYTE, peer, off, BLK, MPI_BYTE, win);
			if (e == MPI_SUCCESS)
				e = MPI_Win_flush(peer, win);
			if (e != MPI_SUCCESS) {
				errs++;
				continue;
			}
			ok++;
			if (memcmp(in, out, BLK)) {
				if ((uint64_t)off + BLK <= strict)
					strict_bad++;
				else
					other_bad++;
			}
		}
		pass++;
		printf("stats rank %d pass %llu ok %llu errors %llu strict_bad %llu other_bad %llu\n", rank,
		       (unsigned long long)pass, (unsigned long long)ok, (unsigned long long)errs,
		       (unsigned long long)strict_bad, (unsigned long long)other_bad);
		fflush(stdout);
	}
	MPI_Win_unlock_all(win);
	MPI_Barrier(MPI_COMM_WORLD);
	printf("final rank %d ok %llu errors %llu strict_bad %llu other_bad %llu\n", rank,
	       (unsigned long long)ok, (unsigned long long)errs, (unsigned long long)strict_bad,
	       (unsigned long long)other_bad);
	fflush(stdout);
	MPI_Win_free(&win);
	free(out);
	free(in);
	MPI_Finalize();
	return 0;
}
