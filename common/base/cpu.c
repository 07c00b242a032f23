#include "base/cpu.h"

#include <cblas.h>
#include <cpuid.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *openblas_get_corename(void);
char *openblas_get_config(void);

/* What the CPU has, asked once: CPUID traps to the hypervisor in a VM,
 * and asked on every matmul (BF16's kernel choice) it took a fifth to a
 * quarter of a BF16 decode token (BENCHMARKS.md, 2026-12-05 third). */
static struct {
	int avx2, avxvnni, avx512, avx512vnni, avx512bf16;
} features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

/* CPUID leaf 1, ECX bit 29: clang's __builtin_cpu_supports has no "f16c". */
static int has_f16c(void)
{
	unsigned a, b, c, d;
	return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}

/* CPUID leaf 7 subleaf 1, EAX bit 4 (clang 14 has no "avxvnni" for
 * __builtin_cpu_supports). Its ymm state is AVX2's, which the caller checks. */
static int has_avxvnni(void)
{
	unsigned a, b, c, d;
	return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
}

static void features_init(void)
{
	__builtin_cpu_init();
	features.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
	features.avxvnni = features.avx2 && has_avxvnni();
	features.avx512 = features.avx2 && __builtin_cpu_supports("avx512f") &&
			  __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
			  __builtin_cpu_supports("avx512dq");
	features.avx512vnni = features.avx512 && __builtin_cpu_supports("avx512vnni");
	features.avx512bf16 = features.avx512 && __builtin_cpu_supports("avx512bf16");
}

int duet_cpu_has_avx2(void)
{
	pthread_once(&features_once, features_init);
	return features.avx2;
}

int duet_cpu_has_avxvnni(void)
{
	pthread_once(&features_once, features_init);
	return features.avxvnni;
}

int duet_cpu_has_avx512(void)
{
	pthread_once(&features_once, features_init);
	return features.avx512;
}

int duet_cpu_has_avx512vnni(void)
{
	pthread_once(&features_once, features_init);
	return features.avx512vnni;
}

int duet_cpu_has_avx512bf16(void)
{
	pthread_once(&features_once, features_init);
	return features.avx512bf16;
}

int duet_cpu_count(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0)
		return CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

int duet_cpu_allowed(int *cpus, int cap)
{
	cpu_set_t set;
	int n = 0;
	if (sched_getaffinity(0, sizeof set, &set) == 0) {
		for (int c = 0; c < CPU_SETSIZE && n < cap; c++)
			if (CPU_ISSET(c, &set))
				cpus[n++] = c;
		return n;
	}
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	for (int c = 0; c < online && n < cap; c++)
		cpus[n++] = c;
	return n;
}

const char *duet_blas_core(void)
{
	return openblas_get_corename();
}

void duet_blas_single_thread(void)
{
	openblas_set_num_threads(1);
}

void duet_blas_select_core(char **argv)
{
	const char *env = getenv("DUET_BLAS_AUTO");
	if (getenv("OPENBLAS_CORETYPE") || (env && !strcmp(env, "0")))
		return;
	if (!duet_cpu_has_avx512())
		return;
	const char *core = openblas_get_corename();
	const char *conf = openblas_get_config();
	if (!core || !conf || !strstr(conf, "DYNAMIC_ARCH"))
		return;
	/* Cores below SkylakeX in OpenBLAS's list use AVX2 at best. */
	static const char *const avx2_cores[] = {"Haswell", "Zen", "Prescott",
						 "Nehalem", "Sandybridge", NULL};
	int slow = 0;
	for (int i = 0; avx2_cores[i]; i++)
		if (!strcasecmp(core, avx2_cores[i]))
			slow = 1;
	if (!slow)
		return;
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return;
	self[n] = 0;
	setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
	execv(self, argv);
	/* exec failed: carry on with the slower core. */
	unsetenv("OPENBLAS_CORETYPE");
}

int duet_cpu_parse_list(const char *s, int *cpus, int cap, int *n,
			struct duet_err *err)
{
	*n = 0;
	const char *p = s;
	while (*p) {
		char *end;
		errno = 0;
		long a = strtol(p, &end, 10);
		if (end == p || errno || a < 0 || a >= CPU_SETSIZE)
			return duet_errf(err, "CPU list '%s': bad CPU number at '%s'", s, p);
		long b = a;
		p = end;
		if (*p == '-') {
			p++;
			b = strtol(p, &end, 10);
			if (end == p || errno || b < a || b >= CPU_SETSIZE)
				return duet_errf(err, "CPU list '%s': bad range end at '%s'", s, p);
			p = end;
		}
		for (long c = a; c <= b; c++) {
			if (*n >= cap)
				return duet_errf(err, "CPU list '%s' names more than %d CPUs", s, cap);
			cpus[(*n)++] = (int)c;
		}
		if (*p == ',')
			p++;
		else if (*p)
			return duet_errf(err, "CPU list '%s': unexpected '%c'", s, *p);
	}
	if (*n == 0)
		return duet_errf(err, "CPU list '%s' is empty", s);
	return 0;
}

int duet_cpu_pin_self(int cpu, struct duet_err *err)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof set, &set))
		return duet_errnof(err, "cannot pin thread to CPU %d", cpu);
	return 0;
}
