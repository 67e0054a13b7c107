package clickhouse

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/storage"
)

// chdbLib is the chdb library (ClickHouse as a shared library, from the
// chdb-core wheel), installed by deploy/dev/chdb.sh.
func chdbLib(t *testing.T) string {
	t.Helper()
	lib := os.Getenv("APISCOUT_CHDB_LIB")
	if lib == "" {
		home, _ := os.UserHomeDir()
		lib = filepath.Join(home, ".cache", "apiscout", "chdb", "chdb", "_chdb.abi3.so")
	}
	if _, err := os.Stat(lib); err != nil {
		t.Fatalf("chdb library %s: %v: install it with `deploy/dev/chdb.sh install` (make test does), "+
			"or point APISCOUT_CHDB_LIB at chdb/_chdb.abi3.so of an installed chdb-core", lib, err)
	}
	return lib
}

// pythonStubs writes C definitions of the Python symbols lib imports: it
// is a Python extension too, but its ADBC entry point never calls Python,
// so the symbols only have to exist for the loader.
func pythonStubs(t *testing.T, lib, dir string) string {
	t.Helper()
	f, err := elf.Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.ImportedSymbols()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{"Py_GetVersion": true} // asked for by the bundled stubs library
	for _, s := range syms {
		if strings.HasPrefix(s.Name, "Py") || strings.HasPrefix(s.Name, "_Py") {
			names[s.Name] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var b strings.Builder
	b.WriteString("#include <stdio.h>\n#include <stdlib.h>\n")
	b.WriteString("const char *Py_GetVersion(void) { return \"3.11.0 (apiscout chdbrun stub)\"; }\n")
	for _, n := range sorted {
		switch {
		case n == "Py_GetVersion":
		case strings.HasSuffix(n, "_Type"), strings.HasPrefix(n, "PyExc_"), strings.HasSuffix(n, "Struct"):
			fmt.Fprintf(&b, "char %s[1024] __attribute__((aligned(64)));\n", n)
		default:
			fmt.Fprintf(&b, "void %s(void) { fprintf(stderr, \"python stub called: %s\\n\"); abort(); }\n", n, n)
		}
	}
	path := filepath.Join(dir, "pystubs.c")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// chdbSession is a running chdbrun.
type chdbSession struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startChdb(t *testing.T) *chdbSession {
	t.Helper()
	lib := chdbLib(t)
	cc, err := exec.LookPath("cc")
	if err != nil {
		if cc, err = exec.LookPath("gcc"); err != nil {
			t.Fatal("no C compiler (cc or gcc) to build the chdb runner: apt-get install gcc")
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "chdbrun")
	src := filepath.Join(repoRoot(t), "storage", "clickhouse", "testdata", "chdbrun.c")
	build := exec.Command(cc, "-O1", "-rdynamic", "-o", bin, src, pythonStubs(t, lib, dir), "-ldl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building chdbrun: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, lib)
	cmd.Dir = dir // chdb keeps its files under the working directory
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &chdbSession{cmd: cmd, in: in, out: bufio.NewScanner(stdout)}
	s.out.Buffer(make([]byte, 1<<20), 1<<20)
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	if !s.out.Scan() || s.out.Text() != "ready" {
		t.Fatalf("chdbrun did not start: %q %v", s.out.Text(), s.out.Err())
	}
	return s
}

// exec runs one statement and returns its row count or the engine's error.
func (s *chdbSession) exec(t *testing.T, sql string) (int, error) {
	t.Helper()
	if _, err := io.WriteString(s.in, strings.TrimRight(sql, "\n")+"\n;;\n"); err != nil {
		t.Fatalf("chdbrun: %v", err)
	}
	if !s.out.Scan() {
		t.Fatalf("chdbrun stopped: %v", s.out.Err())
	}
	line := s.out.Text()
	var n int
	if _, err := fmt.Sscanf(line, "ok %d", &n); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("%s", strings.TrimPrefix(line, "error "))
}

// TestCurrentDialect runs every DDL statement, for a current server's
// features, and every dashboard query through the ClickHouse engine chdb
// embeds (a current release; CI's server is 18.16), and checks that a
// resent insert with the same deduplication token is stored once.
func TestCurrentDialect(t *testing.T) {
	s := startChdb(t)
	must := func(sql string) int {
		t.Helper()
		n, err := s.exec(t, sql)
		if err != nil {
			t.Fatalf("%v\n%s", err, sql)
		}
		return n
	}
	if n := must("SELECT version()"); n != 1 {
		t.Fatalf("SELECT version(): %d rows", n)
	}
	f := DetectFeatures(26, 1, "current")
	statements := 0
	for _, m := range Migrations(f, "apiscout", 30) {
		for _, st := range m.Statements {
			must(st)
			statements++
		}
	}
	// Idempotent: the whole schema again.
	for _, m := range Migrations(f, "apiscout", 30) {
		for _, st := range m.Statements {
			must(st)
		}
	}
	// Retention changes as applyRetention makes them.
	for table, col := range retentionColumns {
		must(fmt.Sprintf("ALTER TABLE apiscout.%s MODIFY TTL toDateTime(%s) + toIntervalDay(7)", table, col))
		must("SELECT create_table_query FROM system.tables WHERE database = 'apiscout' AND name = '" + table + "'")
	}

	// insert_deduplication_token: a resent batch is stored once. Merges
	// stopped, so that a merge cannot be what removed the copy.
	must("SYSTEM STOP MERGES apiscout.checkpoints")
	for i := 0; i < 2; i++ {
		must(`INSERT INTO apiscout.checkpoints (key, version, saved_at, offsets, data)
SETTINGS insert_deduplication_token = 'checkpoints-1-abc' VALUES ('k', 1, now(), '{}', 'state')`)
	}
	if n := must("SELECT key FROM apiscout.checkpoints"); n != 1 {
		t.Errorf("a batch sent twice with one deduplication token: %d rows, want 1", n)
	}
	must(`INSERT INTO apiscout.checkpoints (key, version, saved_at, offsets, data)
SETTINGS insert_deduplication_token = 'checkpoints-1-def' VALUES ('k', 2, now(), '{}', 'state2')`)
	if n := must("SELECT key FROM apiscout.checkpoints"); n != 2 {
		t.Errorf("a different token: %d rows, want 2", n)
	}

	// Every read query of the store, bound as clickhouse-go binds, on one
	// row of each record. The rows are from the last hour: the tables'
	// TTL drops older ones as they are inserted.
	base := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	at := func(m int) string { return base.Add(time.Duration(m) * time.Minute).Format("2006-01-02 15:04:05") }
	for _, ins := range []string{
		`INSERT INTO apiscout.endpoints (service, method, path, version, protocol, classification, calls, first_seen, last_seen,
    auth, sensitive, unauthenticated, risk_score, findings, record)
VALUES ('api.shop.example', 'GET', '/v1/users/{userId}', 1, 'http/1.1', 'shadow', 5, '` + at(0) + `', '` + at(10) + `',
    ['none'], ['email'], 1, 3.5, [], '{}'),
    ('api.shop.example', 'GET', '/v1/users/{userId}', 2, 'http/1.1', 'shadow', 9, '` + at(0) + `', '` + at(20) + `',
    ['none'], ['email'], 1, 3.5, [], '{}')`,
		`INSERT INTO apiscout.services (service, version, calls, first_seen, last_seen, risk_score, spec, record)
VALUES ('api.shop.example', 1, 9, '` + at(0) + `', '` + at(20) + `', 3.5, '', '{}')`,
		`INSERT INTO apiscout.anomalies (id, version, type, severity, owasp, host, method, path, client, started_at, ended_at,
    observed, expected, summary, state, count, record)
VALUES ('inc-1', 1, 'rate_spike', 'high', 'API4:2023', 'api.shop.example', 'GET', '/v1/users/{userId}', '10.1.0.1',
    '` + at(5) + `', '` + at(6) + `', 100, 10, 'spike', 'open', 3, '{}')`,
		`INSERT INTO apiscout.endpoint_minutes (minute, service, method, path, calls, errors_4xx, errors_5xx, no_response,
    unauthenticated, latency_p50_ms, latency_p90_ms, latency_p95_ms, latency_p99_ms, latency_max_ms, request_bytes,
    response_bytes, status_codes, status_counts)
VALUES ('` + at(5) + `', 'api.shop.example', 'GET', '/v1/users/{userId}', 10, 1, 0, 0, 10, 5, 9, 10, 12, 20, 100, 2000, [200, 404], [9, 1])`,
		`INSERT INTO apiscout.transactions (ts, id, sensor_id, seq, service, method, path, query, status, protocol, client, server,
    duration_us, request_bytes, response_bytes, request_content_type, response_content_type, flags, capture_loss, record)
VALUES ('` + at(5) + `.123', 'sensor-a-1-0-x', 'sensor-a', 1, 'api.shop.example', 'GET', '/v1/users/42', '', 200,
    'http/1.1', '10.1.0.1:40000', '10.2.0.1:443', 1200, 0, 100, '', 'application/json', 0, 0, '')`,
	} {
		must(ins)
	}
	rs := &Store{opts: Options{Database: "apiscout"}}
	from, to := base, base.Add(time.Hour)
	var reads []readQuery
	for _, q := range []storage.EndpointQuery{
		{}, {Service: "api.shop.example", Classification: "shadow", Unauthenticated: true, Sensitive: "email", Search: "USERS", Sort: "-last_seen"},
		{Sensitive: "any", Sort: "first_seen", Limit: 5, Offset: 0},
	} {
		c, p, err := rs.endpointsQueries(q)
		if err != nil {
			t.Fatal(err)
		}
		reads = append(reads, c, p)
	}
	sum, recs := rs.servicesQueries()
	c, p := rs.anomaliesQueries(storage.AnomalyQuery{Host: "api.shop.example", Type: "rate_spike", State: "open", From: from, To: to})
	reads = append(reads, sum, recs, c, p,
		rs.statsQuery("api.shop.example", "GET", "/v1/users/{userId}", from, to),
		rs.transactionsQuery(storage.TransactionQuery{IDs: []string{"sensor-a-1-0-x", "other"}, Service: "api.shop.example", From: from, To: to}),
	)
	for _, r := range reads {
		q := bindLikeClient(t, r)
		n, err := s.exec(t, q)
		if err != nil {
			t.Errorf("read query: %v\n%s", err, q)
		} else if n == 0 {
			t.Errorf("read query found none of the rows inserted for it:\n%s", q)
		}
	}
	must("INSERT INTO apiscout.checkpoints (key, version, saved_at, offsets, data) VALUES ('svc', 1, now(), '{}', 'x')")
	if n, err := s.exec(t, bindLikeClient(t, rs.checkpointQuery("svc"))); err != nil || n != 1 {
		t.Errorf("checkpoint query: %d rows, %v", n, err)
	}

	// Every dashboard query, with Grafana's expansion.
	queries := 0
	for name, db := range loadDashboards(t) {
		g := &grafanaMacros{from: testStart, to: testStart.Add(time.Hour), interval: time.Minute, vars: map[string]string{
			"database": "apiscout", "service": "api.shop.example", "method": "GET", "path": "/v1/users/{userId}", "sensor": "sensor-a",
		}}
		for _, v := range db.Templating.List {
			if v.Type != "query" {
				continue
			}
			q, _ := v.Query.(string)
			if _, err := s.exec(t, g.expand(t, q)); err != nil {
				t.Errorf("%s variable %s: %v\n%s", name, v.Name, err, q)
			}
			queries++
		}
		for _, p := range db.Panels {
			for _, tg := range p.Targets {
				q := g.expand(t, tg.RawSQL)
				if _, err := s.exec(t, q); err != nil {
					t.Errorf("%s panel %q: %v\n%s", name, p.Title, err, q)
				}
				queries++
			}
		}
	}
	t.Logf("chdb ran %d DDL statements and %d dashboard queries", statements, queries)
}

// bindLikeClient puts r's values into its placeholders the way
// clickhouse-go's client-side binding does for the types the store binds.
func bindLikeClient(t *testing.T, r readQuery) string {
	t.Helper()
	var b strings.Builder
	args := r.args
	for _, c := range r.sql {
		if c != '?' {
			b.WriteRune(c)
			continue
		}
		if len(args) == 0 {
			t.Fatalf("more placeholders than values in %s", r.sql)
		}
		switch v := args[0].(type) {
		case string:
			b.WriteString(sqlString(v))
		case int64:
			fmt.Fprint(&b, v)
		case []string:
			quoted := make([]string, len(v))
			for i, s := range v {
				quoted[i] = sqlString(s)
			}
			b.WriteString("[" + strings.Join(quoted, ", ") + "]")
		default:
			t.Fatalf("no binding for %T", v)
		}
		args = args[1:]
	}
	if len(args) != 0 {
		t.Fatalf("%d values left over for %s", len(args), r.sql)
	}
	return b.String()
}
