/* The decode node's step model (decode-node/step_model.c) and the prompt
 * tokens it lets a step carry beside running streams: as many as keep the
 * predicted step within the tightest TBT objective among them, at least
 * one, all of max-batch-tokens when nothing streams or nothing asks. */
#include "testutil.h"

#include <string.h>

#include "../decode-node/decode.h"

/* A node whose steps cost 10 ms + 2 a sequence + 1.5 a prompt token + 3
 * a 1024 positions + kpair a 2^20 chunk attention pairs, fitted from
 * noise-free steps. */
static void fitted_pairs(struct decode *d, double kpair)
{
	memset(d, 0, sizeof *d);
	d->node.cfg.max_batch_tokens = 64;
	decode_step_model_init(d);
	for (int i = 0; i < 600; i++) {
		double x[DECODE_STEP_MODEL_FEATURES];
		int seqs = 1 + i % 7, tokens = (i % 3) * 16 + i % 5;
		long long pos = 300 * (i % 11) + 64 * (i % 4), pairs = (long long)tokens * 512 * (i % 6);
		decode_step_features(seqs, tokens, pos, pairs, x);
		duet_linfit_add(&d->step_model, x,
				10 + 2.0 * seqs + 1.5 * tokens + 3.0 * pos / 1024 + kpair * pairs / 1048576);
		d->steps_fitted++;
	}
}

static void fitted(struct decode *d)
{
	fitted_pairs(d, 0);
}

static void test_chunk_budget(void **st)
{
	(void)st;
	static struct decode d;
	fitted(&d);
	struct dreq run[2], local;
	struct dreq *reqs[3] = {&run[0], &local, &run[1]};
	memset(run, 0, sizeof run);
	memset(&local, 0, sizeof local);
	run[0].st = run[1].st = DREQ_RUNNING;
	run[0].kv.n_tokens = 999;  /* 1000 positions after the step */
	run[1].kv.n_tokens = 1047; /* 1048 */
	local.st = DREQ_LOCAL;
	local.prefilled = 1024;
	d.reqs = reqs;
	d.n_reqs = 3;
	/* No objective: the whole chunk. */
	assert_int_equal(decode_chunk_budget(&d), 64);
	/* Base (3 sequences, 3072 positions): 10 + 6 + 9 = 25 ms; a token
	 * adds 1.5 + 3 / 1024 ms. Objective 41 (the tighter of 41 and 50):
	 * 16 / 1.50293 = 10.6 -> 10 tokens. */
	run[0].tbt_ms = 50;
	run[1].tbt_ms = 41;
	assert_int_equal(decode_chunk_budget(&d), 10);
	/* An objective the step cannot keep even without prompt tokens: one
	 * token, so the prompt still advances. */
	run[1].tbt_ms = 20;
	assert_int_equal(decode_chunk_budget(&d), 1);
	/* A loose objective: max-batch-tokens at most. */
	run[0].tbt_ms = run[1].tbt_ms = 1000;
	assert_int_equal(decode_chunk_budget(&d), 64);
	/* The local prefill's own objective does not count, only those of
	 * the streams that wait; nothing streaming: the whole chunk. */
	run[0].tbt_ms = run[1].tbt_ms = 0;
	local.tbt_ms = 20;
	assert_int_equal(decode_chunk_budget(&d), 64);
	run[0].st = run[1].st = DREQ_WAIT_KV;
	run[0].tbt_ms = 20;
	assert_int_equal(decode_chunk_budget(&d), 64);
	/* Streaming again: one token; but before the node has measured two
	 * steps nothing is predicted, and the chunk is whole. */
	run[0].st = DREQ_RUNNING;
	assert_int_equal(decode_chunk_budget(&d), 1);
	/* A chunk's attention over the 1024 prompt tokens before it, 200 ms
	 * a 2^20 pairs: a token costs 1.5 + 3 / 1024 + 200 x 1024 / 2^20 =
	 * 1.69824 ms, and objective 41 leaves 16 / 1.69824 = 9.4 -> 9
	 * tokens where without it 10. */
	fitted_pairs(&d, 200);
	d.reqs = reqs;
	d.n_reqs = 3;
	run[0].st = run[1].st = DREQ_RUNNING;
	run[0].tbt_ms = 50;
	run[1].tbt_ms = 41;
	local.tbt_ms = 0;
	assert_int_equal(decode_chunk_budget(&d), 9);
	d.steps_fitted = 1;
	assert_int_equal(decode_chunk_budget(&d), 64);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunk_budget),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
