package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

func runStorageCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestStorageMigrateEmbedded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	for i := 0; i < 2; i++ { // the second run finds nothing to do
		out, err := runStorageCmd(t, "storage", "migrate", "--log.level", "error", "--storage.kind", "embedded", "--storage.path", path)
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out)
		}
		if !strings.Contains(out, "schema up to date: "+path) {
			t.Errorf("run %d: %q", i, out)
		}
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

func TestStorageMigrateClickHouse(t *testing.T) {
	addr := os.Getenv("APISCOUT_TEST_CLICKHOUSE")
	if addr == "" {
		t.Fatal("APISCOUT_TEST_CLICKHOUSE is not set: `make clickhouse-up` and `eval $(deploy/dev/clickhouse.sh env)`, or `make test`")
	}
	db := fmt.Sprintf("apiscout_cmd_test_%d", os.Getpid())
	args := []string{"storage", "migrate", "--log.level", "error", "--storage.kind", "clickhouse",
		"--storage.clickhouse_addr", addr, "--storage.clickhouse_database", db}
	out, err := runStorageCmd(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "database "+db) {
		t.Errorf("%q", out)
	}
	t.Cleanup(func() { dropStorageTestDatabase(addr, db) })
	if out, err := runStorageCmd(t, "storage", "migrate", "--storage.kind", "clickhouse", "--storage.clickhouse_addr", "127.0.0.1:1"); err == nil ||
		!strings.Contains(err.Error(), "clickhouse connect") {
		t.Errorf("unreachable server: %v\n%s", err, out)
	}
}

func dropStorageTestDatabase(addr, db string) {
	conn, err := ch.Open(&ch.Options{Addr: []string{addr}})
	if err != nil {
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
}
