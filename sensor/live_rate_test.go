package sensor

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/netns"
	"github.com/apiscout/apiscout/internal/pcapgen"
	"github.com/apiscout/apiscout/wire"
)

// TestLiveRate replays a generated capture with tcpreplay into a veth at
// rising rates, a fresh sensor capturing on the other end each time, and
// prints per rate the kernel drops and the share of transactions found:
// the highest rate with zero drops and every transaction is the live
// figure in README "Figures". It is a heavy measurement, run only with
// APISCOUT_LOAD=1:
//
//	APISCOUT_LOAD_MBPS     rates asked, summed over the senders
//	                       (default 100,400,1600,3200,6400,12800)
//	APISCOUT_LOAD_CONNS    connections of 8 calls per replay (default
//	                       8000, about 470 MB: several times the default
//	                       64 MiB ring, so the ring cannot hide a sensor
//	                       slower than the sender)
//	APISCOUT_LOAD_FANOUT   AF_PACKET fanout sizes to measure (default 1)
//	APISCOUT_LOAD_SENDERS  tcpreplay processes replaying shares of the
//	                       connections at once (default 1; one tcpreplay
//	                       saturates a core before a many-core sensor)
func TestLiveRate(t *testing.T) {
	// By default one modest rate on a small capture proves the path
	// (replay into a veth, capture, zero drops, every call found).
	rates, conns, fanouts, senders := "200", 100, "1", 1
	measuring := os.Getenv("APISCOUT_LOAD") != ""
	if measuring {
		rates, conns = "100,400,1600,3200,6400,12800", 8000
	}
	env := func(name string, v *int) {
		if s := os.Getenv(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want a positive number", name, s)
			}
			*v = n
		}
	}
	if v := os.Getenv("APISCOUT_LOAD_MBPS"); v != "" {
		rates = v
	}
	if v := os.Getenv("APISCOUT_LOAD_FANOUT"); v != "" {
		fanouts = v
	}
	env("APISCOUT_LOAD_CONNS", &conns)
	env("APISCOUT_LOAD_SENDERS", &senders)
	pair := newPair(t, "as-live-5", 201, 5)
	dir := t.TempDir()
	// JSON API traffic: connections of 8 calls, MTU-sized frames, dealt
	// round-robin to the senders' files.
	convs := make([][][]pcapgen.Packet, senders)
	want := 0
	for i := 0; i < conns; i++ {
		c := pcapgen.NewConn(netip.MustParseAddrPort(fmt.Sprintf("10.%d.%d.%d:%d", 160+i/62500, i/250%250, i%250+1, 30000+i%30000)),
			netip.MustParseAddrPort("10.205.9.1:8080"), t0.Add(time.Duration(i)*time.Millisecond)).Handshake()
		for j := 0; j < 8; j++ {
			req, resp := exchange("POST", fmt.Sprintf("/rate/%d/%d", i, j), `{"q":"`+strings.Repeat("k", 100*j)+`"}`, 200,
				`{"items":"`+strings.Repeat("v", 1000+1500*j)+`"}`)
			c.Client(req).Server(resp)
			want++
		}
		convs[i%senders] = append(convs[i%senders], c.Close().Packets())
	}
	files := make([]string, senders)
	frames, size := 0, int64(0)
	for k := range convs {
		files[k] = filepath.Join(dir, fmt.Sprintf("rate-%d.pcap", k))
		pkts := pcapgen.Merge(convs[k]...)
		if err := pcapgen.WriteFile(files[k], pkts); err != nil {
			t.Fatal(err)
		}
		frames += len(pkts)
		st, err := os.Stat(files[k])
		if err != nil {
			t.Fatal(err)
		}
		size += st.Size()
	}
	convs = nil
	probeFile := filepath.Join(dir, "probe.pcap")
	// replay returns tcpreplay's achieved rate in Mbit/s ("Rated: ...
	// Mbps"), summed over the files it replays at once.
	replay := func(mbps float64, files ...string) (float64, error) {
		var wg sync.WaitGroup
		rated := make([]float64, len(files))
		errs := make([]error, len(files))
		for k, file := range files {
			wg.Add(1)
			go func(k int, file string) {
				defer wg.Done()
				args := []string{"--intf1=" + pair.DevB}
				if mbps > 0 {
					args = append(args, fmt.Sprintf("--mbps=%g", mbps/float64(len(files))))
				} else {
					args = append(args, "--topspeed")
				}
				out, err := netns.Command(context.Background(), pair.NSB, "tcpreplay", append(args, file)...).CombinedOutput()
				if err != nil {
					errs[k] = fmt.Errorf("tcpreplay: %v: %s", err, out)
					return
				}
				for _, l := range strings.Split(string(out), "\n") {
					if f := strings.Fields(l); len(f) >= 5 && f[0] == "Rated:" {
						rated[k], _ = strconv.ParseFloat(f[3], 64)
					}
				}
			}(k, file)
		}
		wg.Wait()
		total := 0.0
		for k := range files {
			if errs[k] != nil {
				return 0, errs[k]
			}
			total += rated[k]
		}
		return total, nil
	}
	ring := config.Default().Sensor.RingSize
	fmt.Printf("\nLive capture rate: %d frames, %.1f MB, %d transactions per replay, %d tcpreplay sender(s), ring %d MiB per worker, %d CPUs\n",
		frames, float64(size)/1e6, want, senders, ring>>20, runtime.NumCPU())
	fmt.Printf("| fanout | asked Mbit/s | achieved Mbit/s | packets seen | kernel drops | drop share | transactions found |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, fs := range strings.Split(fanouts, ",") {
		fanout, err := strconv.Atoi(fs)
		if err != nil || fanout < 1 {
			t.Fatalf("APISCOUT_LOAD_FANOUT: %q is not a fanout size", fs)
		}
		for _, r := range strings.Split(rates, ",") {
			mbps, err := strconv.ParseFloat(r, 64)
			if err != nil || mbps <= 0 {
				t.Fatalf("APISCOUT_LOAD_MBPS: %q is not a rate", r)
			}
			cfg := config.Default().Sensor
			cfg.Interface, cfg.Fanout = pair.DevA, fanout
			s := startLive(t, pair.NSA, cfg)
			s.ready(t, func(path string) error {
				req, resp := exchange("GET", path, "", 200, "{}")
				c := pcapgen.NewConn(netip.MustParseAddrPort("10.205.8.1:40000"), netip.MustParseAddrPort("10.205.9.1:80"), t0).
					Handshake().Client(req).Server(resp).Close()
				if err := pcapgen.WriteFile(probeFile, c.Packets()); err != nil {
					return err
				}
				_, err := replay(0, probeFile)
				return err
			})
			achieved, err := replay(mbps, files...)
			if err != nil {
				t.Fatal(err)
			}
			count := func(txs []*wire.Transaction) (n int) {
				for _, tx := range txs {
					if strings.HasPrefix(tx.Path, "/rate/") && tx.Status == 200 && tx.Flags == 0 {
						n++
					}
				}
				return n
			}
			// Connections end with FIN, so every found record is out
			// shortly after the replay; what is still missing then was
			// lost.
			s.waitForQuiet(func(txs []*wire.Transaction) bool { return count(txs) >= want })
			stats := s.stop(t)
			found := count(s.sink.snapshot())
			s.sink.reset()
			share := 0.0
			if stats.Packets+stats.KernelDrops > 0 {
				share = float64(stats.KernelDrops) / float64(stats.Packets+stats.KernelDrops)
			}
			fmt.Printf("| %d | %s | %.2f | %d | %d | %.2f%% | %d of %d |\n", fanout, r, achieved, stats.Packets, stats.KernelDrops, 100*share, found, want)
			if !measuring && (stats.KernelDrops != 0 || found != want) {
				t.Errorf("at %s Mbit/s, fanout %d: %d kernel drops, %d of %d transactions found", r, fanout, stats.KernelDrops, found, want)
			}
		}
	}
}

// waitForQuiet is waitFor that also returns once the record count has
// not moved for two seconds.
func (s *liveSensor) waitForQuiet(have func([]*wire.Transaction) bool) {
	last, since := -1, time.Now()
	s.waitFor(func(txs []*wire.Transaction) bool {
		if len(txs) != last {
			last, since = len(txs), time.Now()
		}
		return have(txs) || time.Since(since) > 2*time.Second
	})
}
