#include "http_get.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	char *p;
	size_t n;
};

static size_t sink(char *p, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t len = size * nmemb;
	char *q = realloc(b->p, b->n + len + 1);
	if (!q)
		return 0;
	memcpy(q + b->n, p, len);
	b->p = q;
	b->n += len;
	b->p[b->n] = 0;
	return len;
}

int http_get(const char *url, const char *api_key, long timeout_s, char **body, long *status,
	     struct duet_err *err)
{
	char auth[512];
	struct buf b = {0};
	struct curl_slist *h = NULL;
	CURL *c = curl_easy_init();
	if (!c)
		return duet_errf(err, "%s: curl_easy_init failed", url);
	if (api_key) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", api_key);
		h = curl_slist_append(h, auth);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
	CURLcode rc = curl_easy_perform(c);
	*status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	if (rc != CURLE_OK) {
		free(b.p);
		return duet_errf(err, "%s: %s", url, curl_easy_strerror(rc));
	}
	*body = b.p;
	return 0;
}
