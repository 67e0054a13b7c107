package netns

import (
	"context"
	"io"
	"net"
	"testing"
)

// TestPairCarriesTCP: a listener in A accepts a connection dialled from B
// across the veth pair, and the pair is gone after Close.
func TestPairCarriesTCP(t *testing.T) {
	if err := Check(); err != nil {
		t.Fatal(err)
	}
	p, err := NewPair("as-netns-t", 201, 9)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(p.NSA, "tcp", p.AddrA+":7000")
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		peer <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Write([]byte("hello from A"))
		c.Close()
	}()
	c, err := DialContext(p.NSB)(context.Background(), "tcp", p.AddrA+":7000")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	ln.Close()
	if string(b) != "hello from A" {
		t.Fatalf("read %q", b)
	}
	// The server saw B's address: the connection crossed the veth pair.
	if got := <-peer; got != p.AddrB {
		t.Fatalf("server saw peer %s, want %s", got, p.AddrB)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Run("ip", "netns", "exec", p.NSA, "true"); err == nil {
		t.Fatal("namespace still there after Close")
	}
}
