/* A TCP relay that holds every byte for a fixed time before passing it on,
 * in both directions: the one-way delay of a long link, for the cluster
 * test (tests/cluster_netns.sh), on kernels without sch_netem. Bandwidth
 * is left to the kernel's own shaping (tc tbf on the link).
 *
 * Usage: delay_relay LISTEN_IP:PORT TARGET_IP:PORT DELAY_MS
 * Runs until SIGTERM or SIGINT. A connection that fails on either side is
 * closed on both; the relay keeps serving the others. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64
#define CHUNK_BYTES 65536
/* Bytes held per direction before the relay stops reading: the
 * bandwidth-delay product of 10 Gbit/s and 100 ms, far above any test's. */
#define MAX_HELD_BYTES (128 << 20)

struct chunk {
	struct chunk *next;
	long long due_us;
	size_t len, off;
	char data[];
};

/* One direction: bytes read from `from`, held, written to `to`. */
struct pipe_dir {
	int from, to;
	struct chunk *head, *tail;
	size_t held;
	int eof;      /* `from` said EOF: shut `to` down once drained */
	int shut;     /* done */
};

struct conn {
	int used;
	struct pipe_dir dir[2];
};

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int parse_addr(const char *s, struct sockaddr_in *a)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	memset(a, 0, sizeof *a);
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	if (*end || port <= 0 || port > 65535 || inet_pton(AF_INET, host, &a->sin_addr) != 1)
		return -1;
	return 0;
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void dir_free(struct pipe_dir *d)
{
	while (d->head) {
		struct chunk *c = d->head;
		d->head = c->next;
		free(c);
	}
	d->tail = NULL;
	d->held = 0;
}

static void conn_close(struct conn *c)
{
	close(c->dir[0].from);
	close(c->dir[0].to);
	dir_free(&c->dir[0]);
	dir_free(&c->dir[1]);
	c->used = 0;
}

/* Reads what `from` has into a new chunk due after the delay. */
static int dir_read(struct pipe_dir *d, long long delay_us)
{
	struct chunk *c = malloc(sizeof *c + CHUNK_BYTES);
	if (!c)
		return -1;
	ssize_t n = read(d->from, c->data, CHUNK_BYTES);
	if (n <= 0) {
		free(c);
		if (n == 0) {
			d->eof = 1;
			return 0;
		}
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	}
	c->next = NULL;
	c->len = (size_t)n;
	c->off = 0;
	c->due_us = now_us() + delay_us;
	if (d->tail)
		d->tail->next = c;
	else
		d->head = c;
	d->tail = c;
	d->held += (size_t)n;
	return 0;
}

/* Writes every chunk that is due. */
static int dir_write(struct pipe_dir *d)
{
	long long now = now_us();
	while (d->head && d->head->due_us <= now) {
		struct chunk *c = d->head;
		ssize_t n = write(d->to, c->data + c->off, c->len - c->off);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		c->off += (size_t)n;
		d->held -= (size_t)n;
		if (c->off < c->len)
			return 0;
		d->head = c->next;
		if (!d->head)
			d->tail = NULL;
		free(c);
	}
	if (d->eof && !d->head && !d->shut) {
		shutdown(d->to, SHUT_WR);
		d->shut = 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in la, ta;
	char *end = NULL;
	long delay_ms = argc == 4 ? strtol(argv[3], &end, 10) : -1;
	if (argc != 4 || parse_addr(argv[1], &la) || parse_addr(argv[2], &ta) || *end ||
	    delay_ms < 0 || delay_ms > 10000) {
		fprintf(stderr, "usage: delay_relay LISTEN_IP:PORT TARGET_IP:PORT DELAY_MS (0-10000)\n");
		return 2;
	}
	long long delay_us = delay_ms * 1000;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&la, sizeof la) || listen(lfd, 16)) {
		fprintf(stderr, "delay_relay: cannot listen on %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	static struct conn conns[MAX_CONNS];
	while (!stop) {
		struct pollfd pf[1 + 2 * MAX_CONNS];
		int map[1 + 2 * MAX_CONNS], np = 1;
		long long now = now_us(), wait_us = 1000000;
		pf[0] = (struct pollfd){lfd, POLLIN, 0};
		for (int i = 0; i < MAX_CONNS; i++) {
			if (!conns[i].used)
				continue;
			for (int k = 0; k < 2; k++) {
				struct pipe_dir *d = &conns[i].dir[k];
				short ev = 0;
				if (!d->eof && d->held < MAX_HELD_BYTES)
					ev |= POLLIN;
				if (d->head) {
					if (d->head->due_us <= now)
						ev |= POLLOUT;
					else if (d->head->due_us - now < wait_us)
						wait_us = d->head->due_us - now;
				}
				/* one pollfd per socket and direction: reading `from`
				 * and writing `to` are asked separately below */
				pf[np] = (struct pollfd){d->from, (short)(ev & POLLIN), 0};
				map[np++] = i * 4 + k * 2;
				pf[np] = (struct pollfd){d->to, (short)(ev & POLLOUT), 0};
				map[np++] = i * 4 + k * 2 + 1;
			}
		}
		if (poll(pf, (nfds_t)np, (int)((wait_us + 999) / 1000)) < 0 && errno != EINTR)
			break;
		if (pf[0].revents & POLLIN) {
			int cfd = accept(lfd, NULL, NULL);
			int slot = -1;
			for (int i = 0; i < MAX_CONNS && slot < 0; i++)
				if (!conns[i].used)
					slot = i;
			int tfd = cfd >= 0 && slot >= 0 ? socket(AF_INET, SOCK_STREAM, 0) : -1;
			if (tfd < 0 || connect(tfd, (struct sockaddr *)&ta, sizeof ta)) {
				fprintf(stderr, "delay_relay: dropping a connection: %s\n",
					slot < 0 ? "too many" : strerror(errno));
				if (cfd >= 0)
					close(cfd);
				if (tfd >= 0)
					close(tfd);
			} else {
				set_nonblock(cfd);
				set_nonblock(tfd);
				conns[slot] = (struct conn){1, {{cfd, tfd, NULL, NULL, 0, 0, 0},
							    {tfd, cfd, NULL, NULL, 0, 0, 0}}};
			}
		}
		for (int p = 1; p < np; p++) {
			int i = map[p] / 4, k = (map[p] / 2) % 2, writing = map[p] % 2;
			struct conn *c = &conns[i];
			if (!c->used || !pf[p].revents)
				continue;
			struct pipe_dir *d = &c->dir[k];
			int bad = (pf[p].revents & (POLLERR | POLLNVAL)) != 0;
			if (!bad && !writing && (pf[p].revents & (POLLIN | POLLHUP)))
				bad = dir_read(d, delay_us);
			if (!bad && writing && (pf[p].revents & POLLOUT))
				bad = dir_write(d);
			if (bad || (c->dir[0].shut && c->dir[1].shut))
				conn_close(c);
		}
		/* chunks that fell due while nothing else happened */
		for (int i = 0; i < MAX_CONNS; i++)
			for (int k = 0; conns[i].used && k < 2; k++)
				if (dir_write(&conns[i].dir[k]))
					conn_close(&conns[i]);
	}
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].used)
			conn_close(&conns[i]);
	close(lfd);
	return 0;
}
