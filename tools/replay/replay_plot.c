/* Plots of replays: a gnuplot script written next to the PNGs (so a user
 * can restyle and re-run it), then gnuplot run on it. One code path serves
 * one run and many (--compare): each curve is one run's CSV file. */
#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "replay/replay.h"

extern char **environ;

/* A gnuplot single-quoted string ('' is a quote inside one). */
static void gp_str(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', f);
		fputc(*s, f);
	}
	fputc('\'', f);
}

static void gp_file(FILE *f, const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	gp_str(f, path);
}

/* One "plot" over every run: the same columns of the same file. */
static void plot_all(FILE *f, const char *const *dirs, const char *const *labels, int n,
		     const char *file, const char *using, const char *with)
{
	fprintf(f, "plot ");
	for (int i = 0; i < n; i++) {
		fprintf(f, "%s", i ? ", \\\n     " : "");
		gp_file(f, dirs[i], file);
		fprintf(f, " every ::1 using %s with %s lw 2 title ", using, with);
		gp_str(f, labels[i]);
	}
	fprintf(f, "\n");
}

static void output(FILE *f, const char *out_dir, const char *png, const char *title,
		   const char *xlabel, const char *ylabel)
{
	fprintf(f, "set output ");
	gp_file(f, out_dir, png);
	fprintf(f, "\nset title '%s'\nset xlabel '%s'\nset ylabel '%s'\n", title, xlabel, ylabel);
}

static int run_gnuplot(const char *script, struct duet_err *err)
{
	char *argv[] = {"gnuplot", (char *)script, NULL};
	pid_t pid;
	int rc = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
	if (rc) {
		errno = rc;
		return duet_errnof(err, "cannot run gnuplot for %s (Debian package gnuplot-nox)",
				   script);
	}
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return duet_errnof(err, "waiting for gnuplot");
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return duet_errf(err, "gnuplot failed on %s (exit status %d)", script,
				 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	return 0;
}

static FILE *script_open(const char *out_dir, const char *name, char *path, size_t cap,
			 struct duet_err *err)
{
	snprintf(path, cap, "%s/%s", out_dir, name);
	FILE *f = fopen(path, "w");
	if (!f) {
		duet_errnof(err, "%s", path);
		return NULL;
	}
	fprintf(f, "# written by duet replay; re-run with: gnuplot %s\n"
		   "set terminal pngcairo size 1000,640 noenhanced\n"
		   "set datafile separator ','\nset datafile missing 'NaN'\n"
		   "set key bottom right\nset grid\n",
		name);
	return f;
}

static int script_close_run(FILE *f, const char *path, struct duet_err *err)
{
	int bad = ferror(f);
	if (fclose(f) || bad)
		return duet_errnof(err, "%s: write failed", path);
	return run_gnuplot(path, err);
}

int replay_plot_runs(const char *out_dir, const char *const *dirs, const char *const *labels,
		     int n, struct duet_err *err)
{
	char path[4096];
	FILE *f = script_open(out_dir, "plots.gp", path, sizeof path, err);
	if (!f)
		return -1;
	fprintf(f, "set logscale x\n");
	output(f, out_dir, "ttft_cdf.png", "Time to first token (CDF)", "TTFT (s)", "fraction");
	plot_all(f, dirs, labels, n, "ttft_cdf.csv", "1:2", "steps");
	output(f, out_dir, "tbt_cdf.png", "Time between tokens (CDF)", "TBT (s)", "fraction");
	plot_all(f, dirs, labels, n, "tbt_cdf.csv", "1:2", "steps");
	fprintf(f, "unset logscale x\nset logscale y\nset key top left\n");
	output(f, out_dir, "latency_time.png",
	       "Latency over time: TTFT per request (points), p99 TBT per interval (lines)",
	       "request sent (s from start)", "seconds");
	fprintf(f, "plot ");
	for (int i = 0; i < n; i++) {
		fprintf(f, "%s", i ? ", \\\n     " : "");
		gp_file(f, dirs[i], "requests.csv");
		fprintf(f, " every ::1 using 3:8 with points pt 7 ps 0.6 lc %d title ", i + 1);
		gp_str(f, labels[i]);
		fprintf(f, ".' TTFT', \\\n     ");
		gp_file(f, dirs[i], "timeline.csv");
		fprintf(f, " every ::1 using 1:6 with lines lw 2 lc %d title ", i + 1);
		gp_str(f, labels[i]);
		fprintf(f, ".' p99 TBT'");
	}
	fprintf(f, "\nunset logscale y\n");
	output(f, out_dir, "throughput_time.png", "Throughput over time", "time (s from start)",
	       "output tokens/s");
	plot_all(f, dirs, labels, n, "timeline.csv", "1:2", "lines");
	return script_close_run(f, path, err);
}

int replay_plot_sweeps(const char *out_dir, const char *const *dirs, const char *const *labels,
		       int n, struct duet_err *err)
{
	char path[4096];
	FILE *f = script_open(out_dir, "sweep.gp", path, sizeof path, err);
	if (!f)
		return -1;
	fprintf(f, "set key top left\n");
	output(f, out_dir, "goodput.png", "Goodput (requests within the SLO per second)",
	       "offered load (requests/s)", "goodput (requests/s)");
	plot_all(f, dirs, labels, n, "sweep.csv", "2:4", "linespoints");
	fprintf(f, "set logscale y\n");
	output(f, out_dir, "tbt_p99.png", "p99 time between tokens", "offered load (requests/s)",
	       "p99 TBT (s)");
	plot_all(f, dirs, labels, n, "sweep.csv", "2:7", "linespoints");
	output(f, out_dir, "ttft_p99.png", "p99 time to first token", "offered load (requests/s)",
	       "p99 TTFT (s)");
	plot_all(f, dirs, labels, n, "sweep.csv", "2:6", "linespoints");
	return script_close_run(f, path, err);
}
