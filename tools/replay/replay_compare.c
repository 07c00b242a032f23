/* A sweep's curve (sweep.csv: written after --sweep, read by --compare)
 * and duet replay --compare of runs or sweeps: one table, one set of plots. */
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "replay/replay.h"

/* ---- sweeps ---- */

/* sweep.csv's columns, in the header's order (the reader below indexes
 * rows by these). */
enum sweep_col { SC_MULT, SC_OFFERED, SC_RPS, SC_GOODPUT, SC_ATTAIN, SC_TTFT99, SC_TBT99,
		 SC_TTFT50, SC_TBT50, SC_FAILED, SC_SLO_TTFT, SC_SLO_TBT, SWEEP_COLS };

static const char sweep_header[] =
	"rate_multiplier,offered_rps,req_per_s,goodput_rps,slo_attainment,ttft_p99_s,tbt_p99_s,"
	"ttft_p50_s,tbt_p50_s,failed,slo_ttft_s,slo_tbt_s\n";

int replay_write_sweep(const char *dir, const double *mult, const struct replay_summary *s,
		       int n, struct duet_err *err)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/sweep.csv", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return duet_errnof(err, "%s", path);
	fputs(sweep_header, f);
	for (int i = 0; i < n; i++)
		fprintf(f, "%g,%.4f,%.4f,%.4f,%.4f,%.6f,%.6f,%.6f,%.6f,%d,%.6f,%.6f\n", mult[i],
			s[i].offered_rps, s[i].req_per_s, s[i].goodput_rps, s[i].slo_attainment,
			s[i].ttft.p99, s[i].tbt.p99, s[i].ttft.p50, s[i].tbt.p50, s[i].n_failed,
			s[i].slo_ttft_s, s[i].slo_tbt_s);
	int bad = ferror(f);
	if (fclose(f) || bad)
		return duet_errnof(err, "%s: write failed", path);
	return 0;
}

/* ---- --compare ---- */

struct sweep_rows {
	double v[REPLAY_MAX_SWEEP][SWEEP_COLS];
	int n;
};

static int read_sweep(const char *dir, struct sweep_rows *r, struct duet_err *err)
{
	char path[4096], line[1024];
	snprintf(path, sizeof path, "%s/sweep.csv", dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return duet_errnof(err, "%s", path);
	r->n = 0;
	int ln = 0, rc = 0;
	while (fgets(line, sizeof line, f)) {
		if (ln++ == 0)
			continue;
		if (r->n == REPLAY_MAX_SWEEP)
			break;
		char *p = line;
		for (int c = 0; c < SWEEP_COLS; c++) {
			char *end;
			r->v[r->n][c] = strtod(p, &end);
			if (end == p || (c < SWEEP_COLS - 1 && *end != ',')) {
				rc = duet_errf(err, "%s:%d: column %d is not a number", path, ln, c + 1);
				break;
			}
			p = end + 1;
		}
		if (rc)
			break;
		r->n++;
	}
	fclose(f);
	return rc;
}

void replay_dir_label(const char *dir, char *out, size_t cap)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s", dir);
	size_t n = strlen(tmp);
	while (n > 1 && tmp[n - 1] == '/')
		tmp[--n] = 0;
	snprintf(out, cap, "%s", basename(tmp));
}

static int compare_sweeps(const char *out, const char *const *dirs, const char *const *labels,
			  int n, struct duet_err *err)
{
	static struct sweep_rows rows[REPLAY_MAX_COMPARE];
	for (int i = 0; i < n; i++)
		if (read_sweep(dirs[i], &rows[i], err))
			return -1;
	printf("%-8s", "rate x");
	for (int i = 0; i < n; i++)
		printf(" | %-37.37s", labels[i]);
	printf("\n%-8s", "");
	for (int i = 0; i < n; i++)
		printf(" | %8s %8s %9s %9s", "offered", "goodput", "TBT p99", "TTFT p99");
	printf("\n%-8s", "");
	for (int i = 0; i < n; i++)
		printf(" | %8s %8s %9s %9s", "req/s", "req/s", "ms", "s");
	printf("\n");
	for (int k = 0; k < rows[0].n; k++) {
		printf("%-8g", rows[0].v[k][SC_MULT]);
		for (int i = 0; i < n; i++) {
			int m = -1;
			for (int q = 0; q < rows[i].n; q++)
				if (rows[i].v[q][SC_MULT] == rows[0].v[k][SC_MULT])
					m = q;
			if (m < 0)
				printf(" | %37s", "-");
			else
				printf(" | %8.3f %8.3f %9.1f %9.2f", rows[i].v[m][SC_OFFERED],
				       rows[i].v[m][SC_GOODPUT], rows[i].v[m][SC_TBT99] * 1e3,
				       rows[i].v[m][SC_TTFT99]);
		}
		printf("\n");
	}
	/* Capacity: the highest offered rate whose p99s are within the SLO. */
	for (int i = 0; i < n; i++) {
		double best = 0, good = 0;
		for (int q = 0; q < rows[i].n; q++) {
			const double *v = rows[i].v[q];
			if (v[SC_TBT99] <= v[SC_SLO_TBT] && v[SC_TTFT99] <= v[SC_SLO_TTFT] &&
			    v[SC_OFFERED] > best) {
				best = v[SC_OFFERED];
				good = v[SC_GOODPUT];
			}
		}
		printf("%s: highest offered rate with p99 TBT <= %.1f ms and p99 TTFT <= %.2f s: "
		       "%.3f req/s (goodput there %.3f req/s)\n",
		       labels[i], rows[i].n ? rows[i].v[0][SC_SLO_TBT] * 1e3 : 0,
		       rows[i].n ? rows[i].v[0][SC_SLO_TTFT] : 0, best, good);
		/* DistServe's capacity: the highest rate at which at least
		 * REPLAY_CAPACITY_ATTAINMENT of the requests meet both SLOs. */
		double cap = 0;
		for (int q = 0; q < rows[i].n; q++) {
			const double *v = rows[i].v[q];
			if (v[SC_ATTAIN] >= REPLAY_CAPACITY_ATTAINMENT && v[SC_OFFERED] > cap)
				cap = v[SC_OFFERED];
		}
		printf("%s: highest offered rate with >= %.0f%% of requests within both SLOs: "
		       "%.3f req/s\n",
		       labels[i], 100 * REPLAY_CAPACITY_ATTAINMENT, cap);
	}
	return replay_plot_sweeps(out, dirs, labels, n, err);
}

int replay_compare(const char *out, char **dirs, int n)
{
	struct duet_err err;
	if (n > REPLAY_MAX_COMPARE)
		return cli_fail("replay", "--compare takes at most %d directories", REPLAY_MAX_COMPARE);
	if (cli_mkdirs(out, &err))
		return cli_fail("replay", "%s", err.msg);
	char names[REPLAY_MAX_COMPARE][64];
	const char *labels[REPLAY_MAX_COMPARE];
	int sweeps = 0;
	for (int i = 0; i < n; i++) {
		char p[4096];
		replay_dir_label(dirs[i], names[i], sizeof names[i]);
		labels[i] = names[i];
		snprintf(p, sizeof p, "%s/sweep.csv", dirs[i]);
		sweeps += access(p, R_OK) == 0;
	}
	if (sweeps == n) {
		if (compare_sweeps(out, (const char *const *)dirs, labels, n, &err))
			return cli_fail("replay", "%s", err.msg);
		printf("plots: %s/goodput.png, tbt_p99.png, ttft_p99.png\n", out);
		return 0;
	}
	if (sweeps)
		return cli_fail("replay", "--compare: mix of sweep and single-run directories");
	struct replay_summary s[REPLAY_MAX_COMPARE];
	for (int i = 0; i < n; i++) {
		char p[4096];
		json_error_t je;
		snprintf(p, sizeof p, "%s/summary.json", dirs[i]);
		json_t *j = json_load_file(p, 0, &je);
		if (!j)
			return cli_fail("replay", "%s: %s", p, je.text);
		const char *l = json_string_value(json_object_get(j, "label"));
		if (l)
			snprintf(names[i], sizeof names[i], "%s", l);
		int bad = replay_summary_from_json(j, &s[i], &err);
		json_decref(j);
		if (bad)
			return cli_fail("replay", "%s: %s", p, err.msg);
	}
	replay_print_table(stdout, labels, s, n);
	if (replay_plot_runs(out, (const char *const *)dirs, labels, n, &err))
		return cli_fail("replay", "%s", err.msg);
	printf("plots: %s/ttft_cdf.png, tbt_cdf.png, latency_time.png, throughput_time.png\n", out);
	return 0;
}

