package obs

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/apiscout/apiscout/internal/config"
)

func TestServer(t *testing.T) {
	reg := NewRegistry()
	var h Health
	s, err := Listen("127.0.0.1:0", reg, &h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	get := func(p string) (int, string) {
		resp, err := http.Get("http://" + s.Addr() + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics: %d", code)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	h.SetNotReady("kafka unreachable")
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "kafka") {
		t.Fatalf("healthz %d %q", code, body)
	}
}

func TestLogger(t *testing.T) {
	if _, err := NewLogger(config.LogConfig{Level: "info", Format: "json"}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLogger(config.LogConfig{Level: "chatty", Format: "json"}); err == nil {
		t.Fatal("bad level accepted")
	}
}
