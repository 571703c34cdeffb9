/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* An MPI two-sided program that knows nothing of mrlease, for the hook's
 * non-regression under pml cm + mtl ofi: the two ranks exchange ROUNDS
 * rounds of tagged messages of sizes 0 B .. 4 MiB (eager and large) in both
 * directions (MPI_Isend/Irecv, MPI_Sendrecv, MPI_Ssend, an any-tag receive
 * matched by tag), from the heap and from a MAP_SHARED file in DIR, each
 * verified byte for byte, then a broadcast and an allreduce of the
 * checksums. What it prints depends only on the data exchanged, so two runs
 * (with and without a hook) print the same lines:
 *   mpi_msg DIR ROUNDS
 *   "result rank R msgs N bytes B bad K sum S" then "allreduce S" */
#include <fcntl.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAXLEN (4u << 20)

static void fill(unsigned char *b, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		b[i] = (unsigned char)x;
	}
}

/* FNV-1a over what was received, folded into sum */
static uint64_t fold(uint64_t sum, const unsigned char *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		sum = (sum ^ b[i]) * 0x100000001b3ull;
	return sum;
}

static unsigned char *file_buf(const char *dir, int rank)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/msg.%d", dir, rank);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 2 * MAXLEN)) {
		perror(path);
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	void *p = mmap(NULL, 2 * MAXLEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror("mmap");
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	return p;
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	int rank, size;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if (argc != 3 || size != 2) {
		if (!rank)
			fprintf(stderr, "usage: mpirun -np 2 mpi_msg DIR ROUNDS\n");
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	int rounds = atoi(argv[2]), peer = 1 - rank;
	static const size_t sizes[] = {0, 1, 64, 4000, 65536, 200000, MAXLEN};
	const size_t nsizes = sizeof(sizes) / sizeof(sizes[0]);
	unsigned char *heap_out = malloc(MAXLEN), *heap_in = malloc(MAXLEN), *want = malloc(MAXLEN);
	unsigned char *fb = file_buf(argv[1], rank), *file_out = fb, *file_in = fb + MAXLEN;
	uint64_t msgs = 0, bytes = 0, bad = 0, sum = 0xcbf29ce484222325ull;
	for (int r = 0; r < rounds; r++)
		for (size_t s = 0; s < nsizes; s++)
			for (int kind = 0; kind < 4; kind++) {
				size_t len = sizes[s];
				int tag = (int)((unsigned)r * 64 + (unsigned)s * 4 + (unsigned)kind);
				bool from_file = (r + (int)s + kind) & 1;
				unsigned char *out = from_file ? file_out : heap_out;
				unsigned char *in = from_file ? file_in : heap_in;
				fill(out, len, ((uint64_t)rank << 32) | (uint64_t)tag);
				memset(in, 0xee, len);
				MPI_Request rq[2];
				switch (kind) {
				case 0: /* nonblocking both ways */
					MPI_Irecv(in, (int)len, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &rq[0]);
					MPI_Isend(out, (int)len, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &rq[1]);
					MPI_Waitall(2, rq, MPI_STATUSES_IGNORE);
					break;
				case 1:
					MPI_Sendrecv(out, (int)len, MPI_BYTE, peer, tag, in, (int)len, MPI_BYTE,
						     peer, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
					break;
				case 2: /* synchronous send, ordered by rank */
					if (rank == 0) {
						MPI_Ssend(out, (int)len, MPI_BYTE, peer, tag, MPI_COMM_WORLD);
						MPI_Recv(in, (int)len, MPI_BYTE, peer, tag, MPI_COMM_WORLD,
							 MPI_STATUS_IGNORE);
					} else {
						MPI_Recv(in, (int)len, MPI_BYTE, peer, tag, MPI_COMM_WORLD,
							 MPI_STATUS_IGNORE);
						MPI_Ssend(out, (int)len, MPI_BYTE, peer, tag, MPI_COMM_WORLD);
					}
					break;
				default: { /* any tag, checked against the one sent */
					MPI_Status st;
					MPI_Irecv(in, (int)len, MPI_BYTE, peer, MPI_ANY_TAG, MPI_COMM_WORLD, &rq[0]);
					MPI_Send(out, (int)len, MPI_BYTE, peer, tag, MPI_COMM_WORLD);
					MPI_Wait(&rq[0], &st);
					int got;
					MPI_Get_count(&st, MPI_BYTE, &got);
					if (st.MPI_TAG != tag || (size_t)got != len)
						bad++;
				}
				}
				fill(want, len, ((uint64_t)peer << 32) | (uint64_t)tag);
				if (memcmp(in, want, len))
					bad++;
				sum = fold(sum, in, len);
				msgs++;
				bytes += len;
			}
	printf("result rank %d msgs %llu bytes %llu bad %llu sum %016llx\n", rank,
	       (unsigned long long)msgs, (unsigned long long)bytes, (unsigned long long)bad,
	       (unsigned long long)sum);
	fflush(stdout);
	uint64_t root_sum = sum, all = 0;
	MPI_Bcast(&root_sum, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
	MPI_Allreduce(&sum, &all, 1, MPI_UINT64_T, MPI_BXOR, MPI_COMM_WORLD);
	if (rank == 1)
		printf("allreduce %016llx bcast %016llx\n", (unsigned long long)all,
		       (unsigned long long)root_sum);
	fflush(stdout);
	free(heap_out);
	free(heap_in);
	free(want);
	munmap(fb, 2 * MAXLEN);
	MPI_Finalize();
	return 0;
}
