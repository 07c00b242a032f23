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

/* Solves the system a (k x k, right-hand side in column k) restricted to
 * the features in mask, the others' weights 0, by Gaussian elimination with
 * partial pivoting; -1 when it is singular. */
static int solve_on(const double a[DUET_LINFIT_MAX][DUET_LINFIT_MAX + 1], int k, unsigned mask,
		    double *w)
{
	int idx[DUET_LINFIT_MAX], n = 0;
	for (int i = 0; i < k; i++)
		if (mask & (1u << i))
			idx[n++] = i;
	double m[DUET_LINFIT_MAX][DUET_LINFIT_MAX + 1];
	for (int r = 0; r < n; r++) {
		for (int c = 0; c < n; c++)
			m[r][c] = a[idx[r]][idx[c]];
		m[r][n] = a[idx[r]][k];
	}
	for (int c = 0; c < n; c++) {
		int p = c;
		for (int i = c + 1; i < n; i++)
			if (fabs(m[i][c]) > fabs(m[p][c]))
				p = i;
		if (fabs(m[p][c]) < 1e-12)
			return -1;
		if (p != c)
			for (int j = 0; j <= n; j++) {
				double t = m[c][j];
				m[c][j] = m[p][j];
				m[p][j] = t;
			}
		for (int i = c + 1; i < n; i++) {
			double f = m[i][c] / m[c][c];
			for (int j = c; j <= n; j++)
				m[i][j] -= f * m[c][j];
		}
	}
	double v[DUET_LINFIT_MAX];
	for (int i = n - 1; i >= 0; i--) {
		double t = m[i][n];
		for (int j = i + 1; j < n; j++)
			t -= m[i][j] * v[j];
		v[i] = t / m[i][i];
	}
	for (int i = 0; i < k; i++)
		w[i] = 0;
	for (int i = 0; i < n; i++)
		w[idx[i]] = v[i];
	return 0;
}

/* Minimizes |X w - y|^2 + ridge |w|^2 + sum prior_r (w - w_prior)^2 with
 * every weight >= 0, through its normal equations (xx + ridge I +
 * diag(prior_r)) w = xy + prior_r w_prior. The weights are costs (a
 * step's base, a sequence's, a token's, a position's), none of which can
 * be negative; unconstrained, a decode node's online fit, whose sequences
 * and cached positions rise and fall together, swung to -11 ms a sequence
 * and +17 ms a 1024 positions, and the router (which must take each cost
 * as at least 0) predicted steps 10 ms too long and refused requests that
 * came within 0.5 s (BENCHMARKS.md, 2026-12-07 ninth). When the
 * unconstrained solution has a negative weight, every set of features
 * left free (the others at 0) is solved, and the best feasible one kept:
 * the constrained optimum is one of them, and k <= 5 makes that 31 small
 * systems at most. Nothing feasible and regular: the last solution stays. */
static void solve(struct duet_linfit *f)
{
	int k = f->k;
	double a[DUET_LINFIT_MAX][DUET_LINFIT_MAX + 1];
	for (int i = 0; i < k; i++) {
		for (int j = 0; j < k; j++)
			a[i][j] = f->xx[i][j] + (i == j ? f->ridge + f->prior_r[i] : 0);
		a[i][k] = f->xy[i] + f->prior_r[i] * f->prior_w[i];
	}
	const unsigned all = (1u << k) - 1;
	double w[DUET_LINFIT_MAX], best[DUET_LINFIT_MAX], best_j = 0;
	int found = 0;
	for (unsigned mask = all; mask > 0; mask--) {
		if (solve_on(a, k, mask, w))
			continue;
		int ok = 1;
		for (int i = 0; i < k; i++)
			ok &= w[i] >= 0;
		if (!ok)
			continue;
		/* the objective up to its constant: w' A w - 2 w' b */
		double j = 0;
		for (int r = 0; r < k; r++) {
			double aw = 0;
			for (int c = 0; c < k; c++)
				aw += a[r][c] * w[c];
			j += w[r] * (aw - 2 * a[r][k]);
		}
		if (!found || j < best_j) {
			memcpy(best, w, sizeof best);
			best_j = j;
			found = 1;
		}
		if (mask == all)
			break; /* the unconstrained solution is feasible: it is the optimum */
	}
	if (found)
		memcpy(f->w, best, sizeof(double) * (size_t)k);
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
