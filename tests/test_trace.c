/* Chrome trace files: what base/trace.c writes is valid JSON that
 * tools/trace reads back, whole or cut short; merging renumbers clashing
 * processes and orders by time; stall attribution adds up by hand. */
#include "testutil.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/trace.h"
#include "trace/tracefile.h"

static size_t count_named(json_t *ev, const char *ph, const char *name)
{
	size_t n = 0;
	for (size_t i = 0; i < json_array_size(ev); i++) {
		json_t *e = json_array_get(ev, i);
		const char *p = json_string_value(json_object_get(e, "ph"));
		const char *nm = json_string_value(json_object_get(e, "name"));
		n += p && nm && !strcmp(p, ph) && !strcmp(nm, name);
	}
	return n;
}

static void *spans(void *arg)
{
	(void)arg;
	duet_trace_thread("worker");
	for (int i = 0; i < 500; i++) {
		long long t = duet_now_us();
		duet_trace_span("test", "work", t, t + 10, "\"i\":%d", i);
	}
	return NULL;
}

/* Two threads write at once; names with quotes and control bytes stay
 * valid JSON; the file reads back with every event. */
static void test_write_read(void **st)
{
	(void)st;
	char path[4096];
	tu_path(path, "a.trace.json");
	struct duet_err err;
	assert_int_equal(duet_trace_open(path, "node \"q\"\n", &err), 0);
	assert_true(duet_trace_on());
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, spans, NULL), 0);
	spans(NULL);
	pthread_join(th, NULL);
	long long t = duet_now_us();
	duet_trace_instant("test", "mark", t, NULL);
	duet_trace_counter("queue", t, "requests", 3);
	duet_trace_close();
	assert_false(duet_trace_on());
	duet_trace_span("test", "after close", t, t, NULL); /* ignored */
	json_error_t je;
	json_t *whole = json_load_file(path, 0, &je);
	if (!whole)
		fail_msg("%s: %s", path, je.text);
	json_decref(whole);
	json_t *ev = tracefile_load(path, &err);
	if (!ev)
		fail_msg("%s", err.msg);
	assert_int_equal(count_named(ev, "X", "work"), 1000);
	assert_int_equal(count_named(ev, "i", "mark"), 1);
	assert_int_equal(count_named(ev, "C", "queue"), 1);
	assert_int_equal(count_named(ev, "M", "thread_name"), 3); /* main, then each worker */
	assert_int_equal(count_named(ev, "X", "after close"), 0);
	json_decref(ev);
}

/* A daemon killed mid-run leaves no closing bracket, maybe a comma. */
static void test_cut_short(void **st)
{
	(void)st;
	char path[4096];
	tu_path(path, "cut.json");
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("[\n{\"ph\":\"X\",\"name\":\"a\",\"pid\":1,\"tid\":1,\"ts\":5,\"dur\":1},\n"
	      "{\"ph\":\"X\",\"name\":\"b\",\"pid\":1,\"tid\":1,\"ts\":7,\"dur\":1},\n",
	      f);
	fclose(f);
	struct duet_err err;
	json_t *ev = tracefile_load(path, &err);
	if (!ev)
		fail_msg("%s", err.msg);
	assert_int_equal(json_array_size(ev), 2);
	json_decref(ev);
	f = fopen(path, "w");
	fputs("{\"not\": \"a trace\"}", f);
	fclose(f);
	assert_null(tracefile_load(path, &err));
	assert_non_null(strstr(err.msg, "traceEvents"));
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Two machines' files with the same pid: the second is renumbered, the
 * metadata comes first and the rest is in time order. */
static void test_merge(void **st)
{
	(void)st;
	char a[4096], b[4096];
	tu_path(a, "m1.json");
	tu_path(b, "m2.json");
	write_file(a, "[{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":7,\"tid\":7,"
		      "\"args\":{\"name\":\"router\"}},"
		      "{\"ph\":\"X\",\"name\":\"x\",\"pid\":7,\"tid\":7,\"ts\":30,\"dur\":1},"
		      "{\"ph\":\"X\",\"name\":\"y\",\"pid\":7,\"tid\":7,\"ts\":10,\"dur\":1}]");
	write_file(b, "[{\"ph\":\"X\",\"name\":\"z\",\"pid\":7,\"tid\":9,\"ts\":20,\"dur\":1},"
		      "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":7,\"tid\":9,"
		      "\"args\":{\"name\":\"decode-0\"}}]");
	const char *paths[] = {a, b};
	struct duet_err err;
	json_t *m = tracefile_merge(paths, 2, &err);
	if (!m)
		fail_msg("%s", err.msg);
	json_t *ev = json_object_get(m, "traceEvents");
	assert_int_equal(json_array_size(ev), 5);
	const char *order[] = {"process_name", "process_name", "y", "z", "x"};
	json_int_t pid_z = -1;
	for (size_t i = 0; i < 5; i++) {
		json_t *e = json_array_get(ev, i);
		assert_string_equal(json_string_value(json_object_get(e, "name")), order[i]);
		if (!strcmp(order[i], "z"))
			pid_z = json_integer_value(json_object_get(e, "pid"));
		if (!strcmp(order[i], "y"))
			assert_int_equal(json_integer_value(json_object_get(e, "pid")), 7);
	}
	assert_true(pid_z != 7 && pid_z > 0);
	json_decref(m);
}

/* A decode node's main thread: a step of 40 ms with a prefill chunk, idle
 * 5 ms, a plain step of 10 ms, and a KV write on another thread (ignored).
 * One gap covers all of it plus 5 ms untraced; a shorter gap is not among
 * the worst 50%. */
static void test_stalls(void **st)
{
	(void)st;
	const char *text =
		"[{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":3,\"tid\":3,\"args\":{\"name\":\"decode-0\"}},"
		"{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":3,\"tid\":3,\"args\":{\"name\":\"main\"}},"
		"{\"ph\":\"X\",\"name\":\"step\",\"pid\":3,\"tid\":3,\"ts\":1000000,\"dur\":40000,"
		"\"args\":{\"running\":2,\"prefill_tokens\":64}},"
		"{\"ph\":\"X\",\"name\":\"idle\",\"pid\":3,\"tid\":3,\"ts\":1040000,\"dur\":5000},"
		"{\"ph\":\"X\",\"name\":\"step\",\"pid\":3,\"tid\":3,\"ts\":1045000,\"dur\":10000,"
		"\"args\":{\"running\":2,\"prefill_tokens\":0}},"
		"{\"ph\":\"X\",\"name\":\"kv write\",\"pid\":3,\"tid\":4,\"ts\":1000000,\"dur\":60000}]";
	json_error_t je;
	json_t *ev = json_loads(text, 0, &je);
	assert_non_null(ev);
	/* The long gap starts 10 ms into the first step, ends 5 ms after the
	 * second. */
	struct stall_gap gaps[2] = {{1.001, 1.002, 0}, {1.010, 1.060, 0}};
	struct stall_report r;
	struct duet_err err;
	if (tracefile_stalls(ev, NULL, gaps, 2, 50, &r, &err))
		fail_msg("%s", err.msg);
	assert_string_equal(r.node, "decode-0");
	assert_int_equal(r.n_worst, 1);
	assert_true(r.seconds[STALL_STEP_PREFILL] > 0.0299 && r.seconds[STALL_STEP_PREFILL] < 0.0301);
	assert_true(r.seconds[STALL_IDLE] > 0.0049 && r.seconds[STALL_IDLE] < 0.0051);
	assert_true(r.seconds[STALL_STEP] > 0.0099 && r.seconds[STALL_STEP] < 0.0101);
	assert_true(r.seconds[STALL_UNTRACED] > 0.0049 && r.seconds[STALL_UNTRACED] < 0.0051);
	assert_true(r.seconds[STALL_KV] == 0);
	assert_int_equal(r.steps, 2);
	assert_int_equal(tracefile_stalls(ev, "decode-9", gaps, 2, 50, &r, &err), -1);
	assert_non_null(strstr(err.msg, "decode-9"));
	json_decref(ev);
	/* A decode node named otherwise (the five-host cluster's d0) is found
	 * by its decode events; a prefill node is not. */
	const char *named =
		"[{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":3,\"tid\":3,\"args\":{\"name\":\"d0\"}},"
		"{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":5,\"tid\":5,\"args\":{\"name\":\"p0\"}},"
		"{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":3,\"tid\":3,\"args\":{\"name\":\"main\"}},"
		"{\"ph\":\"X\",\"cat\":\"prefill\",\"name\":\"prefill\",\"pid\":5,\"tid\":5,\"ts\":1000000,\"dur\":9000},"
		"{\"ph\":\"X\",\"cat\":\"decode\",\"name\":\"step\",\"pid\":3,\"tid\":3,\"ts\":1000000,\"dur\":40000,"
		"\"args\":{\"running\":2,\"prefill_tokens\":0}}]";
	ev = json_loads(named, 0, &je);
	assert_non_null(ev);
	if (tracefile_stalls(ev, NULL, gaps, 2, 50, &r, &err))
		fail_msg("%s", err.msg);
	assert_string_equal(r.node, "d0");
	json_decref(ev);
}

/* Two decode nodes: each gap goes to the node the router placed its
 * request on last (request 6 failed over from decode-0 to decode-1); a
 * request the router never placed is counted, not attributed. */
static void test_stalls_two_nodes(void **st)
{
	(void)st;
	const char *text =
		"[{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":3,\"tid\":3,\"args\":{\"name\":\"decode-0\"}},"
		"{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":3,\"tid\":3,\"args\":{\"name\":\"main\"}},"
		"{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":4,\"tid\":4,\"args\":{\"name\":\"decode-1\"}},"
		"{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":4,\"tid\":4,\"args\":{\"name\":\"main\"}},"
		"{\"ph\":\"X\",\"name\":\"place\",\"pid\":1,\"tid\":1,\"ts\":1,\"dur\":1,"
		"\"args\":{\"request\":5,\"decode\":\"decode-1\"}},"
		"{\"ph\":\"X\",\"name\":\"place\",\"pid\":1,\"tid\":1,\"ts\":2,\"dur\":1,"
		"\"args\":{\"request\":6,\"decode\":\"decode-0\"}},"
		"{\"ph\":\"X\",\"name\":\"place\",\"pid\":1,\"tid\":1,\"ts\":3,\"dur\":1,"
		"\"args\":{\"request\":6,\"decode\":\"decode-1\"}},"
		"{\"ph\":\"X\",\"name\":\"idle\",\"pid\":3,\"tid\":3,\"ts\":1000000,\"dur\":100000},"
		"{\"ph\":\"X\",\"name\":\"kv write\",\"pid\":4,\"tid\":4,\"ts\":1000000,\"dur\":100000}]";
	json_error_t je;
	json_t *ev = json_loads(text, 0, &je);
	assert_non_null(ev);
	struct stall_gap gaps[3] = {{1.00, 1.02, 5}, {1.03, 1.06, 6}, {1.06, 1.10, 9}};
	struct stall_report r;
	struct duet_err err;
	if (tracefile_stalls(ev, NULL, gaps, 3, 100, &r, &err))
		fail_msg("%s", err.msg);
	assert_string_equal(r.node, "decode-0,decode-1");
	assert_int_equal(r.n_worst, 3);
	assert_int_equal(r.n_unplaced, 1);
	assert_true(r.seconds[STALL_KV] > 0.0499 && r.seconds[STALL_KV] < 0.0501);
	assert_true(r.seconds[STALL_IDLE] == 0);
	json_decref(ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_read),
		cmocka_unit_test(test_cut_short),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_stalls),
		cmocka_unit_test(test_stalls_two_nodes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
