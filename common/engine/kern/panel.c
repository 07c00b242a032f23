/* Activation panels (kernels.h): the layout every ISA's kernels read. */
#include <string.h>

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
