package protocols

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/connrec"
	"github.com/apiscout/apiscout/internal/grpcpeer"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

func TestRealGRPC(t *testing.T) {
	ln, err := connrec.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srv := grpcpeer.NewServer(nil)
	go srv.Serve(ln)
	defer srv.Stop()

	conn, err := grpc.NewClient(ln.Addr().String(), grpcpeer.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	in, out := []byte("get AB-1234"), []byte(nil)
	if err := conn.Invoke(ctx, "/shop.v1.Catalog/GetItem", &in, &out); err != nil {
		t.Fatal(err)
	}
	if err := conn.Invoke(ctx, "/shop.v1.Catalog/Missing", &in, &out); status.Code(err) != codes.NotFound {
		t.Fatalf("want NotFound, got %v", err)
	}
	// A client-streaming call with three messages, answered by three.
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/shop.v1.Catalog/Sync")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		m := []byte(fmt.Sprint("item ", i))
		st.SendMsg(&m)
	}
	st.CloseSend()
	for {
		var m []byte
		if err := st.RecvMsg(&m); err != nil {
			break
		}
	}
	conn.Close()
	time.Sleep(100 * time.Millisecond)

	f, err := NewFactory(config.Default().Sensor, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*wire.Transaction{}
	for i, c := range ln.Rec.Conns() {
		p := f(stream.ConnInfo{ID: uint64(i)}, func(tx *wire.Transaction) { got[tx.Path] = tx })
		connrec.Replay(p, c, time.Unix(1700000000, 0))
	}
	want := []struct {
		path, status, reqMsgs, respMsgs string
	}{
		{"/shop.v1.Catalog/GetItem", "0", "1", "1"},
		{"/shop.v1.Catalog/Missing", "5", "1", "0"},
		{"/shop.v1.Catalog/Sync", "0", "3", "3"},
	}
	for _, w := range want {
		tx := got[w.path]
		if tx == nil {
			t.Errorf("%s not reported (got %v)", w.path, keys(got))
			continue
		}
		e := map[string]string{}
		for _, h := range tx.Extra {
			e[h.Name] = h.Value
		}
		if tx.Protocol != "grpc" || tx.Method != "POST" || tx.Status != 200 || e["grpc.status"] != w.status ||
			e["grpc.request_messages"] != w.reqMsgs || e["grpc.response_messages"] != w.respMsgs {
			t.Errorf("%s: protocol %s status %d extra %v", w.path, tx.Protocol, tx.Status, e)
		}
	}
}

func keys(m map[string]*wire.Transaction) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
