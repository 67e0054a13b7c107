// Package kafkatest connects tests to the real Kafka broker that
// deploy/dev/kafka.sh starts, creates their topics, and starts and kills
// private brokers for fault tests. A test that needs a broker fails,
// saying how to start one, when none is configured.
package kafkatest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// Broker returns the address of the shared test broker.
func Broker(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("APISCOUT_TEST_KAFKA")
	if addr == "" {
		t.Fatal("APISCOUT_TEST_KAFKA is not set: this test needs a real Kafka broker. " +
			"Run `make test`, or start one with `make kafka-up` and `eval $(deploy/dev/kafka.sh env)`.")
	}
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatalf("Kafka broker %s (APISCOUT_TEST_KAFKA) does not answer: %v; start it with `make kafka-up`", addr, err)
	}
	c.Close()
	return addr
}

// Topic creates a fresh topic with n partitions and returns its name.
func Topic(t testing.TB, addr string, n int) string {
	t.Helper()
	name := fmt.Sprintf("test-%s-%d", sanitize(t.Name()), time.Now().UnixNano())
	CreateTopic(t, addr, name, n)
	return name
}

// CreateTopic creates a topic, waiting until its partitions have leaders.
func CreateTopic(t testing.TB, addr, name string, n int) {
	t.Helper()
	var err error
	for i := 0; i < 50; i++ {
		if err = createTopic(addr, name, n); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("create topic %s on %s: %v", name, addr, err)
}

func createTopic(addr, name string, n int) error {
	conn, err := kafka.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctl, err := conn.Controller()
	if err != nil {
		return err
	}
	cc, err := kafka.Dial("tcp", net.JoinHostPort(ctl.Host, strconv.Itoa(ctl.Port)))
	if err != nil {
		return err
	}
	defer cc.Close()
	if err := cc.CreateTopics(kafka.TopicConfig{Topic: name, NumPartitions: n, ReplicationFactor: 1}); err != nil {
		return err
	}
	parts, err := conn.ReadPartitions(name)
	if err != nil {
		return err
	}
	if len(parts) != n {
		return fmt.Errorf("%d of %d partitions ready", len(parts), n)
	}
	for _, p := range parts {
		if p.Leader.Host == "" {
			return fmt.Errorf("partition %d has no leader yet", p.ID)
		}
	}
	return nil
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

// Private is a broker of a test's own, on its own ports and folder, that
// the test may kill and restart.
type Private struct {
	Addr string
	dir  string
	env  []string
	t    testing.TB
}

// StartPrivate starts a private broker with deploy/dev/kafka.sh, on port
// (and port+1 for its controller); env adds settings of the script
// (KAFKA_SASL_PORT=...).
func StartPrivate(t testing.TB, port int, env ...string) *Private {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "kafka")
	p := &Private{Addr: fmt.Sprintf("127.0.0.1:%d", port), t: t, dir: dir, env: append(append(os.Environ(),
		"KAFKA_DIR="+dir,
		"KAFKA_PORT="+strconv.Itoa(port), "KAFKA_CONTROLLER_PORT="+strconv.Itoa(port+1)), env...)}
	p.run("up")
	t.Cleanup(func() { p.run("down") })
	return p
}

// Kill stops the broker with SIGKILL, keeping its data.
func (p *Private) Kill() { p.runEnv([]string{"KAFKA_KILL=1"}, "stop") }

// Start starts it again on the same data.
func (p *Private) Start() { p.run("up") }

// Freeze stops the broker process with SIGSTOP: connections stay open and
// requests go unanswered, as across a network partition, where Kill makes
// them fail at once. Thaw undoes it; the test's cleanup thaws a broker
// left frozen before stopping it.
func (p *Private) Freeze() {
	p.t.Helper()
	p.signal(syscall.SIGSTOP)
	p.t.Cleanup(func() { p.signal(syscall.SIGCONT) })
}

// Thaw resumes a frozen broker.
func (p *Private) Thaw() {
	p.t.Helper()
	p.signal(syscall.SIGCONT)
}

func (p *Private) signal(sig syscall.Signal) {
	p.t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dir, "kafka.pid"))
	if err != nil {
		p.t.Fatalf("broker pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		p.t.Fatalf("broker pid %q: %v", b, err)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		p.t.Fatalf("signal %v to broker %d: %v", sig, pid, err)
	}
}

func (p *Private) run(verb string) { p.runEnv(nil, verb) }

func (p *Private) runEnv(extra []string, verb string) {
	p.t.Helper()
	cmd := exec.Command(script(), verb)
	cmd.Env = append(append([]string(nil), p.env...), extra...)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("kafka.sh %s: %v\n%s", verb, err, out)
	}
}

func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "dev", "kafka.sh")
}

// WaitReady blocks until the broker accepts metadata requests.
func WaitReady(ctx context.Context, addr string) error {
	for {
		conn, err := kafka.DialContext(ctx, "tcp", addr)
		if err == nil {
			_, err = conn.Brokers()
			conn.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
