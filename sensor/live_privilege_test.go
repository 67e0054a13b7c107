package sensor

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiscout/apiscout/internal/netns"
)

// syncBuffer is an io.Writer the test reads while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLiveLeastPrivilege runs the apiscout binary as user nobody with
// only CAP_NET_RAW (a file capability set with setcap) capturing in a
// namespace: it reports the transactions. The same binary without the
// capability fails with an error that names it.
func TestLiveLeastPrivilege(t *testing.T) {
	for _, tool := range []string{"setcap", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: apt-get install libcap2-bin util-linux (.ci/run installs them)", tool)
		}
	}
	pair := newPair(t, "as-live-4", 201, 4)
	// A directory user nobody can enter.
	dir, err := os.MkdirTemp("", "as-live-4-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, plain := filepath.Join(dir, "apiscout"), filepath.Join(dir, "apiscout-nocap")
	build := exec.Command("go", "build", "-o", bin, "../cmd/apiscout")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := netns.Run("cp", bin, plain); err != nil {
		t.Fatal(err)
	}
	if err := netns.Run("setcap", "cap_net_raw+ep", bin); err != nil {
		t.Fatalf("%v (the file system under %s must support capabilities)", err, dir)
	}
	sensorCmd := func(ctx context.Context, binary string, stdout, stderr io.Writer) *exec.Cmd {
		cmd := netns.Command(ctx, pair.NSA, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
			binary, "sensor", "--interface", pair.DevA, "--sensor.fanout", "2", "--sensor.ring_size", "8MiB",
			"--metrics.listen", "127.0.0.1:9464", "--log.format", "console")
		cmd.Env = append(os.Environ(), "APISCOUT_SENSOR_REDACT_KEY=least-privilege-test-key")
		cmd.Stdout, cmd.Stderr = stdout, stderr
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 10 * time.Second
		return cmd
	}

	t.Run("without CAP_NET_RAW", func(t *testing.T) {
		// Fails before it serves metrics or reads anything.
		var stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := sensorCmd(ctx, plain, io.Discard, &stderr).Run()
		if err == nil || ctx.Err() != nil {
			t.Fatalf("sensor without the capability: err %v (ctx %v), stderr:\n%s", err, ctx.Err(), stderr.String())
		}
		if !strings.Contains(stderr.String(), "CAP_NET_RAW") || !strings.Contains(stderr.String(), pair.DevA) {
			t.Errorf("error does not say which interface and which capability:\n%s", stderr.String())
		}
	})

	t.Run("as nobody with CAP_NET_RAW", func(t *testing.T) {
		serveIn(t, pair.NSA, pair.AddrA+":8080", &http.Server{Handler: http.HandlerFunc(liveHandler)})
		base := "http://" + pair.AddrA + ":8080"
		var stdout, stderr syncBuffer
		ctx, cancel := context.WithCancel(context.Background())
		cmd := sensorCmd(ctx, bin, &stdout, &stderr)
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() {
			cancel()
			<-exited
		}()
		// The rings are open once the sensor logs "capturing".
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(stderr.String(), "capturing") {
			select {
			case err := <-exited:
				t.Fatalf("sensor exited: %v\n%s", err, stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("sensor did not start capturing in 20s; stderr:\n%s", stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		calls := liveCalls("priv", 30)
		cl := nsClient(pair.NSB, true)
		for _, c := range calls {
			if err := c.do(cl, base); err != nil {
				t.Fatal(err)
			}
		}
		cl.CloseIdleConnections()
		// The output is buffered until the sensor stops; its metrics say
		// when every call has been parsed.
		metrics := &http.Client{Transport: &http.Transport{DialContext: netns.DialContext(pair.NSA)}, Timeout: 5 * time.Second}
		parsed := func() string {
			resp, err := metrics.Get("http://127.0.0.1:9464/metrics")
			if err != nil {
				return err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "apiscout_sensor_transactions_total ") {
					return strings.TrimPrefix(l, "apiscout_sensor_transactions_total ")
				}
			}
			return "none"
		}
		for last := ""; !atLeast(last, len(calls)); last = parsed() {
			if time.Now().After(deadline.Add(10 * time.Second)) {
				t.Fatalf("sensor parsed %s of %d calls; stderr:\n%s", last, len(calls), stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		cancel()
		<-exited // an error here is the cancelled context; the exit status tells
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("sensor exited with status %d on SIGINT\n%s", code, stderr.String())
		}
		if !strings.Contains(stderr.String(), `"kernel_drops": 0`) {
			t.Errorf("sensor log does not report zero kernel drops:\n%s", stderr.String())
		}
		exited <- nil // for the deferred wait
		type rec struct {
			Method, Path, Query string
			Status              int
			RequestBodyLen      int64 `json:"request_body_len"`
			ResponseBodyLen     int64 `json:"response_body_len"`
		}
		got := map[string]rec{}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		for _, line := range lines {
			var r rec
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("output line %q: %v", line, err)
			}
			if _, dup := got[r.Path]; dup {
				t.Errorf("%s reported twice", r.Path)
			}
			got[r.Path] = r
		}
		if len(lines) != len(calls) {
			t.Errorf("%d records, want %d", len(lines), len(calls))
		}
		for _, c := range calls {
			r, ok := got[c.path]
			if !ok {
				t.Errorf("%s %s not reported", c.method, c.path)
				continue
			}
			if r.Method != c.method || r.Status != c.status || r.RequestBodyLen != int64(c.reqLen) || r.ResponseBodyLen != c.respLen {
				t.Errorf("%s %s: reported %+v", c.method, c.path, r)
			}
		}
	})
}

func atLeast(v string, n int) bool {
	f, err := strconv.ParseFloat(v, 64)
	return err == nil && f >= float64(n)
}
