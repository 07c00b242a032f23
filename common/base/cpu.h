/* CPU facts and placement: instruction sets, OpenBLAS core choice, CPU
 * lists and affinity. */
#ifndef DUET_CPU_H
#define DUET_CPU_H

#include "base/err.h"

#define DUET_MAX_THREADS 256

int duet_cpu_has_avx2(void);   /* AVX2 + FMA + F16C */
int duet_cpu_has_avxvnni(void); /* and AVX-VNNI (8-bit dot products on 256 bits) */
int duet_cpu_has_avx512(void); /* AVX-512 F, BW, VL, DQ */
int duet_cpu_has_avx512vnni(void); /* and its 8-bit dot product */
int duet_cpu_has_avx512bf16(void); /* and its bfloat16 dot product */
int duet_cpu_count(void);      /* CPUs this process may run on */
/* Their numbers, ascending, into cpus[0..cap); returns how many. */
int duet_cpu_allowed(int *cpus, int cap);

/* OpenBLAS 0.3.21 (Debian 12) does not know CPUs newer than it, e.g. AMD
 * Zen 4/5, and falls back to its Haswell (AVX2) kernels, at half the sgemm
 * throughput of its AVX-512 (SkylakeX) kernels on such a CPU. The core is
 * chosen when the library loads, from OPENBLAS_CORETYPE, so the only fix
 * from inside the program is to set it and exec ourselves once.
 *
 * Call first thing in main(). Does nothing if OPENBLAS_CORETYPE is set,
 * DUET_BLAS_AUTO=0, OpenBLAS already uses an AVX-512 core, the CPU lacks
 * AVX-512 or OpenBLAS was built without runtime core selection. Returns
 * only if no exec happened (or it failed, which is harmless). */
void duet_blas_select_core(char **argv);
/* Name of the OpenBLAS core in use (e.g. "SkylakeX"). */
const char *duet_blas_core(void);
/* BLAS threads: duet parallelises across its own pool and calls sgemm
 * single-threaded from each worker; this pins OpenBLAS to 1 thread. */
void duet_blas_single_thread(void);

/* Parses a CPU list such as "0-3,6,8-9" into cpus[] (at most cap). */
int duet_cpu_parse_list(const char *s, int *cpus, int cap, int *n,
			struct duet_err *err);
/* Pins the calling thread to one CPU. */
int duet_cpu_pin_self(int cpu, struct duet_err *err);

#endif
