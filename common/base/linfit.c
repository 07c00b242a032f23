#include "base/linfit.h"

#include <math.h>
#include <string.h>

void duet_linfit_init(struct duet_linfit *f, int k, double lambda, double ridge)
{
	memset(f, 0, sizeof *f);
	f->k = k < 1 ? 1 : k > DUET_LINFIT_MAX ? DUET_LINFIT_MAX : k;
	f->lambda = lambda;
	f->ridge = ridge;
}

/* Solves (xx + ridge I + diag(prior_r)) w = xy + prior_r w_prior by
 * Gaussian elimination with partial pivoting; the ridge keeps the matrix
 * regular. */
static void solve(struct duet_linfit *f)
{
	int k = f->k;
	double a[DUET_LINFIT_MAX][DUET_LINFIT_MAX + 1];
	for (int i = 0; i < k; i++) {
		for (int j = 0; j < k; j++)
			a[i][j] = f->xx[i][j] + (i == j ? f->ridge + f->prior_r[i] : 0);
		a[i][k] = f->xy[i] + f->prior_r[i] * f->prior_w[i];
	}
	for (int c = 0; c < k; c++) {
		int p = c;
		for (int i = c + 1; i < k; i++)
			if (fabs(a[i][c]) > fabs(a[p][c]))
				p = i;
		if (fabs(a[p][c]) < 1e-12)
			return; /* keep the last solution */
		if (p != c)
			for (int j = 0; j <= k; j++) {
				double t = a[c][j];
				a[c][j] = a[p][j];
				a[p][j] = t;
			}
		for (int i = c + 1; i < k; i++) {
			double m = a[i][c] / a[c][c];
			for (int j = c; j <= k; j++)
				a[i][j] -= m * a[c][j];
		}
	}
	double w[DUET_LINFIT_MAX];
	for (int i = k - 1; i >= 0; i--) {
		double s = a[i][k];
		for (int j = i + 1; j < k; j++)
			s -= a[i][j] * w[j];
		w[i] = s / a[i][i];
	}
	memcpy(f->w, w, sizeof(double) * (size_t)k);
}

void duet_linfit_add(struct duet_linfit *f, const double *x, double y)
{
	int k = f->k;
	for (int i = 0; i < k; i++) {
		for (int j = 0; j < k; j++)
			f->xx[i][j] = f->lambda * f->xx[i][j] + x[i] * x[j];
		f->xy[i] = f->lambda * f->xy[i] + x[i] * y;
	}
	f->n = f->lambda * f->n + 1;
	solve(f);
}

double duet_linfit_predict(const struct duet_linfit *f, const double *x)
{
	double s = 0;
	for (int i = 0; i < f->k; i++)
		s += f->w[i] * x[i];
	return s;
}

void duet_linfit_prior(struct duet_linfit *f, int i, double w0, double strength)
{
	if (i < 0 || i >= f->k)
		return;
	f->prior_w[i] = w0;
	f->prior_r[i] = strength > 0 ? strength : 0;
	solve(f);
}
