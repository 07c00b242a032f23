/* Router overhead (make bench-router): requests/s with trivially short
 * requests, and the router's relay latency per token at 1 and 64
 * concurrent streams against the time between tokens, read from the
 * router's own /metrics. Usage: bench_router URL */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t sink(char *d, size_t sz, size_t n, void *ctx)
{
	(void)d;
	(void)ctx;
	return sz * n;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static char base[256];

static size_t grow(char *d, size_t sz, size_t n, void *ctx)
{
	char **b = ctx;
	size_t have = *b ? strlen(*b) : 0;
	*b = realloc(*b, have + sz * n + 1);
	memcpy(*b + have, d, sz * n);
	(*b)[have + sz * n] = 0;
	return sz * n;
}

/* sum and count of a histogram in /metrics */
static void hist(const char *name, double *sum, double *count)
{
	char url[300], key[128];
	snprintf(url, sizeof url, "%s/metrics", base);
	CURL *c = curl_easy_init();
	char *body = NULL;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, grow);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
	curl_easy_perform(c);
	curl_easy_cleanup(c);
	snprintf(key, sizeof key, "\n%s_sum ", name);
	const char *p = body ? strstr(body, key) : NULL;
	*sum = p ? atof(p + strlen(key)) : 0;
	snprintf(key, sizeof key, "\n%s_count ", name);
	p = body ? strstr(body, key) : NULL;
	*count = p ? atof(p + strlen(key)) : 0;
	free(body);
}

/* total requests, at most conc at a time; returns seconds. */
static double run(int total, int conc, const char *body)
{
	char url[300];
	snprintf(url, sizeof url, "%s/v1/completions", base);
	CURLM *m = curl_multi_init();
	int started = 0, done = 0, running = 0;
	double t0 = now();
	while (done < total) {
		while (started < total && started - done < conc) {
			CURL *c = curl_easy_init();
			curl_easy_setopt(c, CURLOPT_URL, url);
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
			curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
			curl_multi_add_handle(m, c);
			started++;
		}
		curl_multi_perform(m, &running);
		curl_multi_poll(m, NULL, 0, 100, NULL);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(m, &left)))
			if (msg->msg == CURLMSG_DONE) {
				curl_multi_remove_handle(m, msg->easy_handle);
				curl_easy_cleanup(msg->easy_handle);
				done++;
			}
	}
	curl_multi_cleanup(m);
	return now() - t0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench_router URL\n");
		return 2;
	}
	snprintf(base, sizeof base, "%s", argv[1]);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	printf("## Router overhead (%s)\n\n", base);
	const int n_trivial = 2000;
	double dt = run(n_trivial, 16, "{\"prompt\":[1,450],\"max_tokens\":1,\"temperature\":0}");
	printf("trivial requests (2-token prompt, 1 token out), 16 at a time: %d in %.2f s = "
	       "**%.0f requests/s**\n\n",
	       n_trivial, dt, n_trivial / dt);
	printf("| concurrent streams | tokens | mean time between tokens | mean router relay | relay / TBT |\n");
	printf("|---:|---:|---:|---:|---:|\n");
	const int concs[] = {1, 64};
	for (int i = 0; i < 2; i++) {
		double rs0, rc0, ts0, tc0, rs1, rc1, ts1, tc1;
		hist("duet_relay_seconds", &rs0, &rc0);
		hist("duet_tbt_seconds", &ts0, &tc0);
		run(concs[i] * 2, concs[i],
		    "{\"prompt\":[1,450,2472],\"max_tokens\":64,\"temperature\":0,\"stream\":true,"
		    "\"ignore_eos\":true}");
		hist("duet_relay_seconds", &rs1, &rc1);
		hist("duet_tbt_seconds", &ts1, &tc1);
		double relay = (rs1 - rs0) / (rc1 - rc0 > 0 ? rc1 - rc0 : 1);
		double tbt = (ts1 - ts0) / (tc1 - tc0 > 0 ? tc1 - tc0 : 1);
		printf("| %d | %.0f | %.2f ms | %.3f ms | %.1f%% |\n", concs[i], tc1 - tc0, tbt * 1e3,
		       relay * 1e3, 100 * relay / tbt);
		fflush(stdout);
	}
	curl_global_cleanup();
	return 0;
}
