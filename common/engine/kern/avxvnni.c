/* The AVX2 table again, its integer dot products on AVX-VNNI (vpdpbusd,
 * vpdpwssd on 256-bit vectors): for CPUs that have it and no AVX-512
 * (kern/avx2.c says what changes). Built with -mavx2 -mfma -mf16c
 * -mavxvnni; only called when the CPU has them. */
#define DUET_AVXVNNI 1
#include "engine/kern/avx2.c"
