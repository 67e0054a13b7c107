package sensor

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/netns"
	"github.com/apiscout/apiscout/internal/pcapgen"
	"github.com/apiscout/apiscout/wire"
)

// TestLiveRate replays a generated capture with tcpreplay into a veth at
// rising rates, a fresh sensor (one AF_PACKET worker) capturing on the
// other end each time, and prints per rate the kernel drops and the share
// of transactions found: the highest rate with zero drops and every
// transaction is the live figure in README "Figures". It is a heavy
// measurement, run only with APISCOUT_LOAD=1 (rates in
// APISCOUT_LOAD_MBPS, default 100,400,1600,3200,6400,12800).
func TestLiveRate(t *testing.T) {
	// By default one modest rate on a small capture proves the path
	// (replay into a veth, capture, zero drops, every call found); the
	// rising-rate measurement behind the README's table runs with
	// APISCOUT_LOAD=1.
	rates, conns := "200", 100
	measuring := os.Getenv("APISCOUT_LOAD") != ""
	if measuring {
		rates, conns = "100,400,1600,3200,6400,12800", 1000
	}
	if v := os.Getenv("APISCOUT_LOAD_MBPS"); v != "" {
		rates = v
	}
	pair := newPair(t, "as-live-5", 201, 5)
	dir := t.TempDir()
	// JSON API traffic: 1000 connections of 8 calls, MTU-sized frames.
	var convs [][]pcapgen.Packet
	want := 0
	for i := 0; i < conns; i++ {
		c := pcapgen.NewConn(netip.MustParseAddrPort(fmt.Sprintf("10.205.%d.%d:%d", i/250, i%250+1, 30000+i)),
			netip.MustParseAddrPort("10.205.9.1:8080"), t0.Add(time.Duration(i)*time.Millisecond)).Handshake()
		for j := 0; j < 8; j++ {
			req, resp := exchange("POST", fmt.Sprintf("/rate/%d/%d", i, j), `{"q":"`+strings.Repeat("k", 100*j)+`"}`, 200,
				`{"items":"`+strings.Repeat("v", 1000+1500*j)+`"}`)
			c.Client(req).Server(resp)
			want++
		}
		convs = append(convs, c.Close().Packets())
	}
	capFile := filepath.Join(dir, "rate.pcap")
	pkts := pcapgen.Merge(convs...)
	if err := pcapgen.WriteFile(capFile, pkts); err != nil {
		t.Fatal(err)
	}
	probeFile := filepath.Join(dir, "probe.pcap")
	// replay returns tcpreplay's achieved rate ("Rated: ... Mbps").
	replay := func(file string, mbps string) (string, error) {
		args := []string{"--intf1=" + pair.DevB}
		if mbps != "" {
			args = append(args, "--mbps="+mbps)
		} else {
			args = append(args, "--topspeed")
		}
		out, err := netns.Command(context.Background(), pair.NSB, "tcpreplay", append(args, file)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("tcpreplay: %v: %s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) >= 5 && f[0] == "Rated:" {
				return f[3], nil
			}
		}
		return "?", nil
	}
	st, _ := os.Stat(capFile)
	fmt.Printf("\nLive capture rate: %d frames, %.1f MB, %d transactions per replay, 1 AF_PACKET worker\n", len(pkts), float64(st.Size())/1e6, want)
	fmt.Printf("| asked Mbit/s | achieved Mbit/s | packets seen | kernel drops | drop share | transactions found |\n|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range strings.Split(rates, ",") {
		cfg := config.Default().Sensor
		cfg.Interface = pair.DevA
		s := startLive(t, pair.NSA, cfg)
		s.ready(t, func(path string) error {
			req, resp := exchange("GET", path, "", 200, "{}")
			c := pcapgen.NewConn(netip.MustParseAddrPort("10.205.8.1:40000"), netip.MustParseAddrPort("10.205.9.1:80"), t0).
				Handshake().Client(req).Server(resp).Close()
			if err := pcapgen.WriteFile(probeFile, c.Packets()); err != nil {
				return err
			}
			_, err := replay(probeFile, "")
			return err
		})
		achieved, err := replay(capFile, r)
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
		// Connections end with FIN, so every found record is out shortly
		// after the replay; what is still missing then was lost.
		s.waitForQuiet(func(txs []*wire.Transaction) bool { return count(txs) >= want })
		stats := s.stop(t)
		found := count(s.sink.snapshot())
		share := 0.0
		if stats.Packets+stats.KernelDrops > 0 {
			share = float64(stats.KernelDrops) / float64(stats.Packets+stats.KernelDrops)
		}
		fmt.Printf("| %s | %s | %d | %d | %.2f%% | %d of %d |\n", r, achieved, stats.Packets, stats.KernelDrops, 100*share, found, want)
		if !measuring && (stats.KernelDrops != 0 || found != want) {
			t.Errorf("at %s Mbit/s: %d kernel drops, %d of %d transactions found", r, stats.KernelDrops, found, want)
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
