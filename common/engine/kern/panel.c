/* Activation panels (kernels.h): the layout every ISA's kernels read. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "base/half.h"
#include "engine/kern/kernels.h"

void duet_panel_pack_f32(const float *x, int ldx, int K, int B, float *panel)
{
	int chunks = (K + 31) / 32 * 2;
	for (int c = 0; c < chunks; c++)
		for (int b = 0; b < B; b++) {
			float *o = panel + ((size_t)c * B + b) * DUET_PANEL_CHUNK;
			int k0 = c * DUET_PANEL_CHUNK;
			int n = K - k0 < DUET_PANEL_CHUNK ? K - k0 : DUET_PANEL_CHUNK;
			if (n > 0)
				memcpy(o, x + (size_t)b * ldx + k0, sizeof(float) * (size_t)n);
			for (int i = n > 0 ? n : 0; i < DUET_PANEL_CHUNK; i++)
				o[i] = 0;
		}
}

/* bf16 of x as the hardware converts it: subnormal inputs count as zero. */
static uint16_t to_bf16(float x)
{
	if (fabsf(x) < FLT_MIN)
		x = signbit(x) ? -0.0f : 0.0f;
	return duet_fp32_to_bf16(x);
}

void duet_panel_pack_bf16_ref(const float *x, int ldx, int K, int B, struct duet_bf16x2 *panel)
{
	int chunks = (K + DUET_BF16_CHUNK - 1) / DUET_BF16_CHUNK;
	for (int c = 0; c < chunks; c++)
		for (int b = 0; b < B; b++) {
			struct duet_bf16x2 *o = &panel[(size_t)c * B + b];
			for (int i = 0; i < DUET_BF16_CHUNK; i++) {
				int k = c * DUET_BF16_CHUNK + i;
				float v = k < K ? x[(size_t)b * ldx + k] : 0.0f;
				o->hi[i] = to_bf16(v);
				o->lo[i] = to_bf16(v - duet_bf16_to_fp32(o->hi[i]));
			}
		}
}
