/*
 * chdbrun runs SQL statements through chdb (ClickHouse embedded as a
 * library, from the chdb-core wheel) without Python: it loads the
 * library's ADBC driver entry point and executes each statement read from
 * stdin (statements end with a line holding only ";;"). For each it prints
 * one line: "ok ROWS" or "error MESSAGE" (newlines in the message become
 * spaces). The Go test storage/clickhouse/chdb_test.go compiles it, with a
 * file of stub Python symbols the library references but never calls on
 * this path, and drives it.
 *
 * usage: chdbrun PATH/_chdb.abi3.so < statements
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The parts of the Arrow C data interface and of adbc.h (ADBC 1.0.0)
 * used here, in their published layouts. */
typedef uint8_t AdbcStatusCode;
struct ArrowSchema;
struct ArrowArray {
	int64_t length, null_count, offset, n_buffers, n_children;
	const void **buffers;
	struct ArrowArray **children;
	struct ArrowArray *dictionary;
	void (*release)(struct ArrowArray *);
	void *private_data;
};
struct ArrowArrayStream {
	int (*get_schema)(struct ArrowArrayStream *, struct ArrowSchema *);
	int (*get_next)(struct ArrowArrayStream *, struct ArrowArray *);
	const char *(*get_last_error)(struct ArrowArrayStream *);
	void (*release)(struct ArrowArrayStream *);
	void *private_data;
};
struct AdbcDriver;
struct AdbcError {
	char *message;
	int32_t vendor_code;
	char sqlstate[5];
	void (*release)(struct AdbcError *);
	void *private_data;
	struct AdbcDriver *private_driver;
};
struct AdbcDatabase { void *private_data; struct AdbcDriver *private_driver; };
struct AdbcConnection { void *private_data; struct AdbcDriver *private_driver; };
struct AdbcStatement { void *private_data; struct AdbcDriver *private_driver; };
typedef void *unused;
struct AdbcDriver {
	void *private_data, *private_manager;
	AdbcStatusCode (*release)(struct AdbcDriver *, struct AdbcError *);
	AdbcStatusCode (*DatabaseInit)(struct AdbcDatabase *, struct AdbcError *);
	AdbcStatusCode (*DatabaseNew)(struct AdbcDatabase *, struct AdbcError *);
	AdbcStatusCode (*DatabaseSetOption)(struct AdbcDatabase *, const char *, const char *, struct AdbcError *);
	AdbcStatusCode (*DatabaseRelease)(struct AdbcDatabase *, struct AdbcError *);
	unused ConnectionCommit, ConnectionGetInfo, ConnectionGetObjects, ConnectionGetTableSchema, ConnectionGetTableTypes;
	AdbcStatusCode (*ConnectionInit)(struct AdbcConnection *, struct AdbcDatabase *, struct AdbcError *);
	AdbcStatusCode (*ConnectionNew)(struct AdbcConnection *, struct AdbcError *);
	unused ConnectionSetOption, ConnectionReadPartition;
	AdbcStatusCode (*ConnectionRelease)(struct AdbcConnection *, struct AdbcError *);
	unused ConnectionRollback, StatementBind, StatementBindStream;
	AdbcStatusCode (*StatementExecuteQuery)(struct AdbcStatement *, struct ArrowArrayStream *, int64_t *, struct AdbcError *);
	unused StatementExecutePartitions, StatementGetParameterSchema;
	AdbcStatusCode (*StatementNew)(struct AdbcConnection *, struct AdbcStatement *, struct AdbcError *);
	unused StatementPrepare;
	AdbcStatusCode (*StatementRelease)(struct AdbcStatement *, struct AdbcError *);
	unused StatementSetOption;
	AdbcStatusCode (*StatementSetSqlQuery)(struct AdbcStatement *, const char *, struct AdbcError *);
	unused StatementSetSubstraitPlan;
	unused later[128]; /* members of later ADBC revisions, never filled for 1.0.0 */
};
typedef AdbcStatusCode (*AdbcDriverInitFunc)(int version, void *driver, struct AdbcError *error);
#define ADBC_VERSION_1_0_0 1000000

static struct AdbcDriver drv;
static struct AdbcDatabase db;
static struct AdbcConnection conn;

static void say_error(const char *what, const char *msg) {
	printf("error %s: ", what);
	for (const char *p = msg ? msg : "unknown"; *p; p++) putchar(*p == '\n' || *p == '\r' ? ' ' : *p);
	putchar('\n');
}

static int check(const char *what, int status, struct AdbcError *e) {
	if (status == 0) return 0;
	say_error(what, e->message);
	if (e->release) e->release(e);
	memset(e, 0, sizeof *e);
	return 1;
}

static void run(const char *sql) {
	struct AdbcError e;
	struct AdbcStatement st;
	struct ArrowArrayStream out;
	int64_t affected = -1;
	long rows = 0;
	memset(&e, 0, sizeof e);
	memset(&st, 0, sizeof st);
	memset(&out, 0, sizeof out);
	if (check("statement", drv.StatementNew(&conn, &st, &e), &e)) return;
	if (check("sql", drv.StatementSetSqlQuery(&st, sql, &e), &e) ||
	    check("execute", drv.StatementExecuteQuery(&st, &out, &affected, &e), &e)) {
		drv.StatementRelease(&st, &e);
		return;
	}
	for (;;) {
		struct ArrowArray a;
		memset(&a, 0, sizeof a);
		if (out.get_next(&out, &a) != 0) {
			say_error("fetch", out.get_last_error ? out.get_last_error(&out) : NULL);
			rows = -1;
			break;
		}
		if (!a.release) break;
		rows += (long)a.length;
		a.release(&a);
	}
	if (out.release) out.release(&out);
	drv.StatementRelease(&st, &e);
	if (rows >= 0) printf("ok %ld\n", rows);
}

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH/_chdb.abi3.so < statements\n", argv[0]);
		return 2;
	}
	void *h = dlopen(argv[1], RTLD_LAZY | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	AdbcDriverInitFunc init = (AdbcDriverInitFunc)dlsym(h, "AdbcDriverInit");
	if (!init) {
		fprintf(stderr, "no AdbcDriverInit in %s\n", argv[1]);
		return 1;
	}
	struct AdbcError e;
	memset(&e, 0, sizeof e);
	if (check("init", init(ADBC_VERSION_1_0_0, &drv, &e), &e) || check("database", drv.DatabaseNew(&db, &e), &e) ||
	    check("database", drv.DatabaseInit(&db, &e), &e) || check("connection", drv.ConnectionNew(&conn, &e), &e) ||
	    check("connection", drv.ConnectionInit(&conn, &db, &e), &e)) {
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	size_t cap = 1 << 16, len = 0;
	char *sql = malloc(cap), line[65536];
	while (fgets(line, sizeof line, stdin)) {
		if (strcmp(line, ";;\n") == 0) {
			sql[len] = 0;
			run(sql);
			fflush(stdout);
			len = 0;
			continue;
		}
		size_t n = strlen(line);
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			sql = realloc(sql, cap);
		}
		memcpy(sql + len, line, n);
		len += n;
	}
	/* The engine's threads may not stop cleanly at exit: leave at once. */
	fflush(stdout);
	_exit(0);
}
