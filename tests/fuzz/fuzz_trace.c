/* libFuzzer target: request traces through `duet replay`'s parsers (Azure
 * CSV, Mooncake JSONL, plain CSV, and the format detection), then slicing
 * and length fitting of whatever parsed.
 *
 * Input: one byte (the format: auto, azure, mooncake, plain), then the
 * file. */
#include <stdint.h>
#include <stdio.h>

#include "replay/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	enum trace_format fmt = (enum trace_format)(data[0] & 3);
	FILE *f = fmemopen((void *)(data + 1), size - 1, "r");
	if (!f)
		return 0;
	struct trace t;
	struct duet_err err;
	if (trace_read(f, "fuzz", fmt, &t, &err) == 0) {
		struct trace_fit fit;
		double start = t.n ? t.req[t.n / 2].arrival_s : 0;
		if (trace_slice(&t, start, (data[0] >> 2) & 1 ? 60 : 0, (data[0] >> 3) & 7, &err) ==
		    0)
			(void)trace_fit(&t, (data[0] >> 6) & 1 ? 0.1 : 1, (data[0] >> 7) ? 2 : 1, 512,
					&fit, &err);
		trace_free(&t);
	}
	fclose(f);
	return 0;
}
