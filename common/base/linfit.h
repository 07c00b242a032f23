/* An online least-squares fit y ~ w . x over a few features, weighting
 * older samples down by a forgetting factor, so that the model follows a
 * node whose load changes (a decode node's step time as a function of
 * batch size and prompt tokens). The weights are costs: none is below 0
 * (non-negative least squares). */
#ifndef DUET_LINFIT_H
#define DUET_LINFIT_H

#define DUET_LINFIT_MAX 5 /* features */

struct duet_linfit {
	int k;	       /* features */
	double lambda; /* weight kept by past samples at each new one, (0, 1] */
	double ridge;  /* added to the diagonal: features never seen get weight 0 */
	double xx[DUET_LINFIT_MAX][DUET_LINFIT_MAX], xy[DUET_LINFIT_MAX];
	double n; /* weighted sample count */
	/* Per feature, a prior weight the fit is pulled towards with the
	 * given strength (duet_linfit_prior); 0, 0 by default. Not forgotten:
	 * where samples stop saying anything about a feature, the prior is
	 * what is left. */
	double prior_w[DUET_LINFIT_MAX], prior_r[DUET_LINFIT_MAX];
	double w[DUET_LINFIT_MAX];
};

void duet_linfit_init(struct duet_linfit *f, int k, double lambda, double ridge);
/* Adds a sample and solves for w again (k <= 5: a few hundred flops). */
void duet_linfit_add(struct duet_linfit *f, const double *x, double y);
double duet_linfit_predict(const struct duet_linfit *f, const double *x);
/* Pulls feature i's weight towards w0 with the strength of samples whose
 * values of feature i, squared, sum to strength (one sample with x_i = 64
 * is strength 4096), and solves again: what a measured cost says before the
 * samples do, and after they have been forgotten. */
void duet_linfit_prior(struct duet_linfit *f, int i, double w0, double strength);

#endif
