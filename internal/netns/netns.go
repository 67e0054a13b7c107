// Package netns builds throwaway Linux network namespaces joined by veth
// pairs, so tests can put real servers, clients and a capturing sensor on
// a real wire without touching the host's network. It needs root (or
// CAP_SYS_ADMIN and CAP_NET_ADMIN) and the ip and ethtool commands.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Check reports what is missing to build namespaces, as an error that
// says what to install or how to run; nil when all is there.
func Check() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (run the tests as root, e.g. `sudo -E go test ./sensor/...`, or `make test` in CI)")
	}
	for cmd, pkg := range map[string]string{"ip": "iproute2", "ethtool": "ethtool"} {
		if _, err := exec.LookPath(cmd); err != nil {
			missing = append(missing, fmt.Sprintf("the %s command (apt-get install %s)", cmd, pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("network namespace tests need %s", strings.Join(missing, " and "))
	}
	return nil
}

// Run runs a command and returns its combined output in the error.
func Run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Pair is two namespaces A and B joined by one veth pair, DevA in A with
// AddrA and DevB in B with AddrB, both in 10.X.Y.0/24, offloads off so
// the frames a capture sees are the frames on the wire.
type Pair struct {
	NSA, NSB     string
	DevA, DevB   string
	AddrA, AddrB string
}

// NewPair creates namespaces name-a and name-b joined by veth devices
// name-a / name-b (names are cut to the kernel's 15 characters) with
// addresses 10.x.y.1 and 10.x.y.2. A stale pair of the same name is
// removed first. Close removes everything.
func NewPair(name string, x, y int) (*Pair, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	if len(name) > 13 {
		return nil, fmt.Errorf("netns: name %q is longer than 13 characters (interface names hold 15)", name)
	}
	p := &Pair{NSA: name + "-a", NSB: name + "-b", DevA: name + "-a", DevB: name + "-b",
		AddrA: fmt.Sprintf("10.%d.%d.1", x, y), AddrB: fmt.Sprintf("10.%d.%d.2", x, y)}
	p.Close() // leftovers of an interrupted run
	steps := [][]string{
		{"netns", "add", p.NSA},
		{"netns", "add", p.NSB},
		{"link", "add", p.DevA, "netns", p.NSA, "type", "veth", "peer", "name", p.DevB, "netns", p.NSB},
		{"-n", p.NSA, "addr", "add", p.AddrA + "/24", "dev", p.DevA},
		{"-n", p.NSB, "addr", "add", p.AddrB + "/24", "dev", p.DevB},
		{"-n", p.NSA, "link", "set", "lo", "up"},
		{"-n", p.NSB, "link", "set", "lo", "up"},
		{"-n", p.NSA, "link", "set", p.DevA, "up"},
		{"-n", p.NSB, "link", "set", p.DevB, "up"},
	}
	for _, s := range steps {
		if err := Run("ip", s...); err != nil {
			p.Close()
			return nil, err
		}
	}
	for _, ns := range [][2]string{{p.NSA, p.DevA}, {p.NSB, p.DevB}} {
		if err := NoOffload(ns[0], ns[1]); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// NoOffload turns off checksum and segmentation offloads on dev in ns:
// with them on, a capture sees 64 KB super-frames and unfinished
// checksums instead of what a wire would carry.
func NoOffload(ns, dev string) error {
	return Run("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off")
}

// Close deletes both namespaces (which deletes the veth pair).
func (p *Pair) Close() error {
	var errs []error
	for _, ns := range []string{p.NSA, p.NSB} {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			errs = append(errs, Run("ip", "netns", "del", ns))
		}
	}
	return errors.Join(errs...)
}

// Do runs fn on an OS thread switched into namespace ns and switches back
// afterwards. Sockets fn creates stay in ns for their whole life, wherever
// they are used later; goroutines fn starts do not run in ns.
func Do(ns string, fn func() error) error {
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer f.Close()
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: current namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: enter %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and dies with this goroutine rather than
		// run other goroutines in the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("netns: leave %s: %w", ns, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Listen opens a listener in ns.
func Listen(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := Do(ns, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// DialContext returns a dial function whose sockets are created in ns,
// for http.Transport.DialContext and grpc.WithContextDialer.
func DialContext(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(ns, func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Command is a command run inside ns with `ip netns exec`.
func Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}
