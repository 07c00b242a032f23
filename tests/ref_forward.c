#include "ref_forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/repack.h"

/* Row r of w as floats, whatever its layout (engine/repack.h); buf holds
 * one stored row (w->row_bytes). */
static void row_f32(const struct duet_tensor *w, int64_t r, uint8_t *buf, float *out)
{
	duet_dequant_row(w->type, duet_tensor_row_any(w, r, buf), out, w->cols);
}

static uint8_t *row_buf(const struct duet_tensor *w)
{
	uint8_t *buf = malloc(w->row_bytes);
	if (!buf)
		abort(); /* a test oracle: out of memory ends the test run */
	return buf;
}

/* y[rows] = W x, W dequantized one row at a time. */
static void matvec(const struct duet_tensor *w, const float *x, float *y, float *tmp)
{
	uint8_t *buf = row_buf(w);
	for (int64_t r = 0; r < w->rows; r++) {
		row_f32(w, r, buf, tmp);
		double s = 0;
		for (int64_t k = 0; k < w->cols; k++)
			s += (double)tmp[k] * x[k];
		y[r] = (float)s;
	}
	free(buf);
}

static void rmsnorm(float *out, const float *x, const float *g, int n, float eps)
{
	double ss = 0;
	for (int i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	double scale = 1.0 / sqrt(ss / n + eps);
	for (int i = 0; i < n; i++)
		out[i] = (float)(x[i] * scale * g[i]);
}

/* Rotates pair i of every head (values 2i and 2i+1; for Qwen2, i and
 * i + hd/2) by pos * base^(-2i/hd), divided by Llama 3's factor for pair i
 * when the model has them. */
static void rope(float *v, int n_heads, int hd, int pos, const struct duet_model *m)
{
	const struct duet_config *c = &m->cfg;
	for (int h = 0; h < n_heads; h++)
		for (int i = 0; i < hd / 2; i++) {
			double theta = (pos / (double)c->rope_scale) *
				       pow(c->rope_base, -2.0 * i / hd) /
				       (m->rope_freqs ? m->rope_freqs[i] : 1.0);
			double cs = cos(theta), sn = sin(theta);
			/* Qwen pairs value i with i + hd/2 (NeoX), Llama 2i with 2i+1 */
			int neox = c->arch != DUET_ARCH_LLAMA;
			float *p = v + h * hd + (neox ? i : 2 * i);
			int o = neox ? hd / 2 : 1;
			double a = p[0], b = p[o];
			p[0] = (float)(a * cs - b * sn);
			p[o] = (float)(a * sn + b * cs);
		}
}

int ref_forward(const struct duet_model *m, const int *tokens, int T, float *logits)
{
	return ref_forward_last(m, tokens, T, T, logits);
}

int ref_forward_last(const struct duet_model *m, const int *tokens, int T, int n_out,
		     float *logits)
{
	if (n_out < 1 || n_out > T)
		return -1;
	const int first = T - n_out; /* the first position given logits */
	const struct duet_config *c = &m->cfg;
	int D = c->dim, H = c->hidden_dim, hd = c->head_dim;
	int kvd = c->n_kv_heads * hd, L = c->n_layers, V = c->vocab_size;
	int group = c->n_heads / c->n_kv_heads;
	int widest = D > H ? D : H;
	if (c->n_heads * hd > widest)
		widest = c->n_heads * hd;
	float *x = calloc((size_t)T * D, sizeof *x);
	float *K = calloc((size_t)L * T * kvd, sizeof *K);
	float *Vv = calloc((size_t)L * T * kvd, sizeof *Vv);
	int QD = c->n_heads * hd; /* Qwen3's heads may span more than D */
	float *xn = malloc(sizeof(float) * D), *q = malloc(sizeof(float) * QD);
	float *att = malloc(sizeof(float) * QD), *o = malloc(sizeof(float) * D);
	float *g = malloc(sizeof(float) * H), *u = malloc(sizeof(float) * H);
	float *tmp = malloc(sizeof(float) * (size_t)(widest > V ? widest : V));
	double *sc = malloc(sizeof(double) * T);
	int rc = -1;
	if (!x || !K || !Vv || !xn || !q || !att || !o || !g || !u || !tmp || !sc)
		goto out;
	uint8_t *buf = row_buf(&m->tok_embd);
	for (int t = 0; t < T; t++)
		row_f32(&m->tok_embd, tokens[t], buf, x + (size_t)t * D);
	free(buf);
	for (int l = 0; l < L; l++) {
		const struct duet_layer *ly = &m->layers[l];
		float *Kl = K + (size_t)l * T * kvd, *Vl = Vv + (size_t)l * T * kvd;
		/* Position by position, as decoding one token at a time would. */
		for (int t = 0; t < T; t++) {
			float *xt = x + (size_t)t * D;
			rmsnorm(xn, xt, ly->attn_norm, D, c->rms_eps);
			matvec(&ly->wq, xn, q, tmp);
			matvec(&ly->wk, xn, Kl + (size_t)t * kvd, tmp);
			matvec(&ly->wv, xn, Vl + (size_t)t * kvd, tmp);
			if (ly->bq) { /* Qwen2: biases on Q, K and V */
				for (int i = 0; i < QD; i++)
					q[i] += ly->bq[i];
				for (int i = 0; i < kvd; i++) {
					Kl[(size_t)t * kvd + i] += ly->bk[i];
					Vl[(size_t)t * kvd + i] += ly->bv[i];
				}
			}
			if (ly->q_norm) { /* Qwen3: RMS norm of each head of Q and K */
				for (int h = 0; h < c->n_heads; h++)
					rmsnorm(q + h * hd, q + h * hd, ly->q_norm, hd, c->rms_eps);
				for (int h = 0; h < c->n_kv_heads; h++)
					rmsnorm(Kl + (size_t)t * kvd + h * hd, Kl + (size_t)t * kvd + h * hd,
						ly->k_norm, hd, c->rms_eps);
			}
			rope(q, c->n_heads, hd, t, m);
			rope(Kl + (size_t)t * kvd, c->n_kv_heads, hd, t, m);
			for (int h = 0; h < c->n_heads; h++) {
				int kh = h / group;
				double mx = -INFINITY, sum = 0;
				for (int s = 0; s <= t; s++) {
					const float *k = Kl + (size_t)s * kvd + kh * hd;
					double d = 0;
					for (int i = 0; i < hd; i++)
						d += (double)q[h * hd + i] * k[i];
					sc[s] = d / sqrt((double)hd);
					if (sc[s] > mx)
						mx = sc[s];
				}
				for (int s = 0; s <= t; s++) {
					sc[s] = exp(sc[s] - mx);
					sum += sc[s];
				}
				for (int i = 0; i < hd; i++) {
					double a = 0;
					for (int s = 0; s <= t; s++)
						a += sc[s] / sum * Vl[(size_t)s * kvd + kh * hd + i];
					att[h * hd + i] = (float)a;
				}
			}
			matvec(&ly->wo, att, o, tmp);
			for (int i = 0; i < D; i++)
				xt[i] += o[i];
			rmsnorm(xn, xt, ly->ffn_norm, D, c->rms_eps);
			matvec(&ly->w_gate, xn, g, tmp);
			matvec(&ly->w_up, xn, u, tmp);
			for (int i = 0; i < H; i++)
				g[i] = (float)(g[i] / (1.0 + exp(-(double)g[i])) * u[i]);
			matvec(&ly->w_down, g, o, tmp);
			for (int i = 0; i < D; i++)
				xt[i] += o[i];
		}
	}
	/* The classifier, the largest matrix, dequantized once for all
	 * positions (in place: each position's normalized state into x). */
	for (int t = first; t < T; t++) {
		rmsnorm(xn, x + (size_t)t * D, m->out_norm, D, c->rms_eps);
		memcpy(x + (size_t)t * D, xn, sizeof(float) * D);
	}
	buf = row_buf(&m->output);
	for (int64_t r = 0; r < m->output.rows; r++) {
		row_f32(&m->output, r, buf, tmp);
		for (int t = first; t < T; t++) {
			double s = 0;
			for (int k = 0; k < D; k++)
				s += (double)tmp[k] * x[(size_t)t * D + k];
			logits[(size_t)(t - first) * V + r] = (float)s;
		}
	}
	free(buf);
	rc = 0;
out:
	free(x), free(K), free(Vv), free(xn), free(q), free(att), free(o);
	free(g), free(u), free(tmp), free(sc);
	return rc;
}
