/* An online least-squares fit y ~ w . x over a few features, weighting
 * older samples down by a forgetting factor, so that the model follows a
 * node whose load changes (a decode node's step time as a function of
 * batch size and prompt tokens). */
#ifndef DUET_LINFIT_H
#define DUET_LINFIT_H

#define DUET_LINFIT_MAX 5 /* features */

struct duet_linfit {
	int k;	       /* features */
	double lambda; /* weight kept by past samples at each new one, (0, 1] */
	double ridge;  /* added to the diagonal: features never seen get weight 0 */
	double xx[DUET_LINFIT_MAX][DUET_LINFIT_MAX], xy[DUET_LINFIT_MAX];
	double n; /* weighted sample count */
	double w[DUET_LINFIT_MAX];
};

void duet_linfit_init(struct duet_linfit *f, int k, double lambda, double ridge);
/* Adds a sample and solves for w again (k <= 5: a few hundred flops). */
void duet_linfit_add(struct duet_linfit *f, const double *x, double y);
double duet_linfit_predict(const struct duet_linfit *f, const double *x);

#endif
