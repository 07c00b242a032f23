/* One HTTP GET into memory, for the duet commands that ask a running
 * server something (duet up waiting for nodes, duet replay reading
 * /v1/models). */
#ifndef DUET_HTTP_GET_H
#define DUET_HTTP_GET_H

#include "base/err.h"

/* GET url (with a bearer key unless NULL) within timeout_s. On success
 * *body is the NUL-terminated answer (the caller frees it, NULL when
 * empty) and *status its HTTP status; -1 with err when no answer came. */
int http_get(const char *url, const char *api_key, long timeout_s, char **body, long *status,
	     struct duet_err *err);

#endif
