package wsparse

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/apiscout/apiscout/internal/connrec"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// echo runs a real WebSocket server (github.com/coder/websocket) and client
// on loopback and returns the server-side bytes after the handshake, with
// the 101 response's headers.
func echo(t *testing.T, mode websocket.CompressionMode, msgs []string) ([]connrec.Chunk, []wire.Header) {
	t.Helper()
	ln, err := connrec.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: mode, CompressionThreshold: 1})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			c.Write(r.Context(), typ, append([]byte(`{"echo":`), append(b, '}')...))
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/ws/feed?room=1",
		&websocket.DialOptions{CompressionMode: mode, CompressionThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "bye")
	time.Sleep(50 * time.Millisecond)
	return afterHandshake(t, ln.Rec.Conns()[0])
}

// afterHandshake drops the HTTP/1 upgrade exchange from the recording and
// returns the rest with the 101's headers.
func afterHandshake(t *testing.T, chunks []connrec.Chunk) ([]connrec.Chunk, []wire.Header) {
	var all [2][]byte
	for _, c := range chunks {
		all[c.Dir] = append(all[c.Dir], c.Data...)
	}
	var out []connrec.Chunk
	var resp []wire.Header
	for d := range all {
		i := bytes.Index(all[d], []byte("\r\n\r\n"))
		if i < 0 {
			t.Fatalf("no handshake in direction %d", d)
		}
		if d == 1 {
			for _, line := range strings.Split(string(all[d][:i]), "\r\n")[1:] {
				k, v, _ := strings.Cut(line, ":")
				resp = append(resp, wire.Header{Name: k, Value: strings.TrimSpace(v)})
			}
		}
		out = append(out, connrec.Chunk{Dir: stream.Dir(d), Data: all[d][i+4:]})
	}
	return out, resp
}

func run(chunks []connrec.Chunk, resp []wire.Header, split int) *wire.Transaction {
	var got *wire.Transaction
	s := StartFromHandshake(stream.ConnInfo{ID: 3}, 1, "chat.test", "/ws/feed", "room=1", time.Unix(5, 0), nil, resp)
	p := New(s, DefaultOptions(), nil, func(tx *wire.Transaction) { got = tx })
	ts := time.Unix(6, 0)
	for _, c := range chunks {
		for i := 0; i < len(c.Data); i += split {
			p.Data(c.Dir, c.Data[i:min(i+split, len(c.Data))], ts)
		}
	}
	p.Close("fin", ts)
	return got
}

func extra(tx *wire.Transaction) map[string]string {
	m := map[string]string{}
	for _, h := range tx.Extra {
		m[h.Name] = h.Value
	}
	return m
}

func TestRealWebSocket(t *testing.T) {
	msgs := []string{`{"op":"subscribe","topic":"prices"}`, `{"op":"ping"}`, strings.Repeat(`{"op":"bulk"}`, 500)}
	for _, mode := range []websocket.CompressionMode{websocket.CompressionDisabled, websocket.CompressionContextTakeover, websocket.CompressionNoContextTakeover} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			chunks, resp := echo(t, mode, msgs)
			deflate := false
			for _, h := range resp {
				deflate = deflate || strings.Contains(h.Value, "permessage-deflate")
			}
			if deflate != (mode != websocket.CompressionDisabled) {
				t.Fatalf("mode %v: permessage-deflate negotiated = %v", mode, deflate)
			}
			for _, split := range []int{1 << 20, 1, 7} {
				tx := run(chunks, resp, split)
				e := extra(tx)
				if tx.Protocol != "websocket" || tx.Path != "/ws/feed" || tx.Host != "chat.test" {
					t.Fatalf("record %+v", tx)
				}
				if e["ws.client_messages"] != "3" || e["ws.server_messages"] != "3" || e["ws.close_code"] != "1000" {
					t.Errorf("split %d: counts %v", split, e)
				}
				samples := strings.Split(string(tx.RequestBody), "\n")
				if len(samples) != 3 || samples[0] != msgs[0] || !strings.HasPrefix(string(tx.ResponseBody), `{"echo":{"op":"subscribe"`) {
					t.Errorf("split %d: samples %q / %.60q", split, samples, tx.ResponseBody)
				}
				if tx.Flags != 0 || tx.RequestContentType != "application/x-ndjson" {
					t.Errorf("flags %v content type %q", tx.Flags, tx.RequestContentType)
				}
			}
		})
	}
}

func FuzzFrames(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1}, true)
	f.Add([]byte{0xc1, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, false)
	f.Fuzz(func(t *testing.T, b []byte, deflate bool) {
		p := New(Start{Deflate: deflate}, DefaultOptions(), nil, func(*wire.Transaction) {})
		p.Data(stream.ClientToServer, b, time.Unix(1, 0))
		p.Data(stream.ServerToClient, b, time.Unix(1, 0))
		p.Close("fin", time.Unix(1, 0))
	})
}
