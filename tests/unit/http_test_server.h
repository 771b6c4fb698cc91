/*
 * http_test_server.h — a tiny scripted HTTP/1.1 server for unit tests.
 *
 * ts_start() binds 127.0.0.1 on a free port and forks a server process that
 * forks once per connection, so slow answers never block other clients.
 * Every answer closes its connection. Counters shared with the test process
 * (an anonymous shared mapping) script sequences such as "503 twice, then
 * 200" and record how many transfers overlapped. The server processes die
 * with the test process (PR_SET_PDEATHSIG) and on ts_stop().
 *
 * Routes (numbers are decimal):
 *   /ok                   200 "hello", application/json
 *   /echo                 200, body = the raw request (head and body)
 *   /status/C             status C, body "nope"
 *   /flaky/I/K            503 "busy" for the first K hits on counter I, then 200 "finally"
 *   /retry-after/I/S      429 with Retry-After: S on the first hit of counter I, then 200 "ok"
 *   /retry-after-date/S   503 with Retry-After as an HTTP-date S seconds ahead
 *   /error-bytes/N        500 with N patterned bytes, no Content-Length
 *   /bytes/N              200 with Content-Length N and a patterned body
 *   /stream/N             200, N patterned bytes, no Content-Length (ends at close)
 *   /cut/I/N              first hit of counter I: announces N bytes, sends N/2 and closes;
 *                         later hits: the full body
 *   /slow/MS              waits MS milliseconds, then 200 "late"
 *   /trickle/N            announces N bytes, sends one every 50 ms
 *   /dl/N                 like /bytes/N but holds the last byte 150 ms, counting overlap
 *   /redir-file /redir-ftp /redir-ok   302 to file://, ftp:// and /ok
 *   /redir-self           307 to http://127.0.0.1:PORT/ok (absolute, same origin)
 *   /redir-host           302 to http://localhost:PORT/ok (same address, another origin)
 *   /redir-netpath        301 to //localhost:PORT/ok (network-path reference)
 *   /redir-port           302 to http://127.0.0.1:PORT+1/ok
 *   /redir-chain          302 to /redir-host
 * The body pattern is byte i = 'a' + i % 26.
 */
#ifndef VB_HTTP_TEST_SERVER_H
#define VB_HTTP_TEST_SERVER_H

#include <sys/types.h>

#define TS_COUNTERS 64

typedef struct ts_shared {
    int hits[TS_COUNTERS]; /* per-counter request count */
    int current;           /* /dl transfers in progress */
    int peak;              /* most /dl transfers seen at once */
} ts_shared;

typedef struct ts_server {
    pid_t pid;
    int port;
    ts_shared *shared;
} ts_server;

/* Starts the server; 0 on success. */
int ts_start(ts_server *s);
/* Stops the server and unmaps the counters. */
void ts_stop(ts_server *s);
/* The fixture of the HTTP client tests: libcurl's global state, a started
 * server and a fresh temporary directory ("/tmp/<prefix>XXXXXX", written to
 * tmpdir, at most tmpdirlen bytes). 0 on success. */
int ts_fixture_start(ts_server *s, char *tmpdir, size_t tmpdirlen, const char *prefix);
/* Undoes ts_fixture_start (the directory must be empty). */
void ts_fixture_stop(ts_server *s, const char *tmpdir);
/* Expected byte at offset i of a patterned body. */
char ts_pattern(long long i);

#endif
