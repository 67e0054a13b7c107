package wire

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

func sampleTransaction() *Transaction {
	start := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	return &Transaction{
		SensorID: "s1", Seq: 42, ConnID: 7, Index: 1,
		Client:       netip.MustParseAddrPort("10.0.0.1:51234"),
		Server:       netip.MustParseAddrPort("[2001:db8::1]:8080"),
		Mirror:       Mirror{VNI: 5001, VLANs: []uint16{10, 20}, ERSPANSession: 3, Source: "eth1"},
		Protocol:     "http/1.1",
		RequestStart: start, RequestEnd: start.Add(time.Millisecond),
		ResponseStart: start.Add(3 * time.Millisecond), ResponseEnd: start.Add(4 * time.Millisecond),
		Method: "POST", Host: "api.example.com", Path: "/v1/users/17", Query: "a=b", Version: "HTTP/1.1",
		Status: 201, Reason: "Created",
		RequestHeaders:  []Header{{"Host", "api.example.com"}, {"Content-Type", "application/json"}},
		ResponseHeaders: []Header{{"Content-Type", "application/json"}},
		RequestBody:     []byte(`{"name":"x"}`), ResponseBody: []byte(`{"id":17}`),
		RequestBodyWireLen: 12, RequestBodyLen: 12, ResponseBodyWireLen: 9, ResponseBodyLen: 9,
		RequestContentType: "application/json", ResponseContentType: "application/json",
		Flags: FlagGap | FlagMidstream, CaptureLoss: 100,
		Extra: []Header{{"grpc.status", "0"}},
	}
}

func TestTransactionRoundTrip(t *testing.T) {
	in := sampleTransaction()
	b := AppendTransaction(nil, in)
	var out Transaction
	if err := DecodeTransaction(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, &out) {
		t.Fatalf("round trip differs:\n in=%+v\nout=%+v", in, &out)
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	b := AppendTransaction(nil, sampleTransaction())
	b = protowire.AppendTag(b, 999, protowire.BytesType)
	b = protowire.AppendString(b, "from the future")
	b = protowire.AppendTag(b, 998, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, 1)
	var out Transaction
	if err := DecodeTransaction(b, &out); err != nil {
		t.Fatalf("unknown fields must be skipped: %v", err)
	}
	if out.Path != "/v1/users/17" {
		t.Fatalf("path = %q", out.Path)
	}
}

func TestMalformed(t *testing.T) {
	b := AppendTransaction(nil, sampleTransaction())
	for _, cut := range []int{1, 5, len(b) / 2, len(b) - 1} {
		var out Transaction
		err := DecodeTransaction(b[:cut], &out)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("cut %d: error %v is not ErrMalformed", cut, err)
		}
	}
	var out Transaction
	if err := DecodeTransaction([]byte{0xff, 0xff, 0xff}, &out); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage: %v", err)
	}
}

func TestHeartbeatRoundTrip(t *testing.T) {
	in := &Heartbeat{SensorID: "s", Seq: 3, Time: time.Unix(100, 5).UTC(), Packets: 10, Bytes: 1000,
		KernelDrops: 1, CaptureLossBytes: 2, AckedBytes: 400, Transactions: 4,
		Dropped: map[string]uint64{"queue_full": 2, "spool_full": 1}, Mirrors: []Mirror{{VNI: 1}}}
	var out Heartbeat
	if err := DecodeHeartbeat(AppendHeartbeat(nil, in), &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, &out) {
		t.Fatalf("differs: %+v vs %+v", in, &out)
	}
}

func TestFlagsJSON(t *testing.T) {
	f := FlagGap | FlagNoResponse
	b, _ := f.MarshalJSON()
	if string(b) != `["gap","no_response"]` {
		t.Fatalf("got %s", b)
	}
	var g Flags
	if err := g.UnmarshalJSON([]byte(`["gap","no_response","from_future"]`)); err != nil || g != f {
		t.Fatalf("got %v %v", g, err)
	}
	if b, _ := Flags(0).MarshalJSON(); string(b) != `[]` {
		t.Fatalf("empty flags render %s", b)
	}
}

func FuzzDecodeTransaction(f *testing.F) {
	f.Add(AppendTransaction(nil, sampleTransaction()))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var tx Transaction
		if err := DecodeTransaction(b, &tx); err != nil {
			return
		}
		var again Transaction
		if err := DecodeTransaction(AppendTransaction(nil, &tx), &again); err != nil {
			t.Fatalf("re-encoding a decoded record fails: %v", err)
		}
	})
}

func BenchmarkEncodeTransaction(b *testing.B) {
	tx := sampleTransaction()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendTransaction(buf[:0], tx)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeTransaction(b *testing.B) {
	buf := AppendTransaction(nil, sampleTransaction())
	var tx Transaction
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		if err := DecodeTransaction(buf, &tx); err != nil {
			b.Fatal(err)
		}
	}
}

// realisticTransaction is a typical API call of about 1 KB on the wire:
// browser-ish request headers, a JSON request and response.
func realisticTransaction() *Transaction {
	start := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	return &Transaction{
		SensorID: "sensor-eu-west-1a", Seq: 9_812_345, ConnID: 4_123_456, Index: 3,
		Client: netip.MustParseAddrPort("10.12.4.77:51234"), Server: netip.MustParseAddrPort("10.12.9.3:8443"),
		Protocol:     "http/1.1",
		RequestStart: start, RequestEnd: start.Add(120 * time.Microsecond),
		ResponseStart: start.Add(3 * time.Millisecond), ResponseEnd: start.Add(3200 * time.Microsecond),
		Method: "POST", Host: "orders.internal.example.com", Path: "/api/v2/customers/83421/orders", Query: "expand=items&currency=EUR",
		Version: "HTTP/1.1", Status: 201, Reason: "Created",
		RequestHeaders: []Header{
			{"Host", "orders.internal.example.com"}, {"User-Agent", "checkout-service/4.12.1 (+go1.24)"},
			{"Accept", "application/json"}, {"Accept-Encoding", "gzip, br"}, {"Content-Type", "application/json"},
			{"Content-Length", "212"}, {"Authorization", "Bearer [redacted]"},
			{"X-Request-Id", "4f6c1f0e-8a7b-4c11-9d54-2f3e0b9a6c21"}, {"Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			{"X-Forwarded-For", "203.0.113.19"},
		},
		ResponseHeaders: []Header{
			{"Content-Type", "application/json; charset=utf-8"}, {"Content-Length", "287"},
			{"Date", "Sun, 01 Mar 2026 12:00:00 GMT"}, {"Location", "/api/v2/customers/83421/orders/99812"},
			{"Cache-Control", "no-store"}, {"X-Request-Id", "4f6c1f0e-8a7b-4c11-9d54-2f3e0b9a6c21"},
		},
		RequestBody:        []byte(`{"items":[{"sku":"SKU-118-BLK","qty":2,"price":{"amount":"19.90","currency":"EUR"}},{"sku":"SKU-044-RED","qty":1,"price":{"amount":"7.50","currency":"EUR"}}],"shipping":{"method":"standard","country":"DE"}}`),
		ResponseBody:       []byte(`{"id":99812,"customer":83421,"status":"created","total":{"amount":"47.30","currency":"EUR"},"items":[{"sku":"SKU-118-BLK","qty":2},{"sku":"SKU-044-RED","qty":1}],"created_at":"2026-03-01T12:00:00.003Z","links":{"self":"/api/v2/customers/83421/orders/99812"}}`),
		RequestBodyWireLen: 212, RequestBodyLen: 212, ResponseBodyWireLen: 287, ResponseBodyLen: 287,
		RequestContentType: "application/json", ResponseContentType: "application/json",
	}
}

func BenchmarkEncodeRealistic(b *testing.B) {
	tx := realisticTransaction()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		buf = AppendTransaction(buf[:0], tx)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeRealistic(b *testing.B) {
	buf := AppendTransaction(nil, realisticTransaction())
	var tx Transaction
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		if err := DecodeTransaction(buf, &tx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRealisticAliasing(b *testing.B) {
	buf := AppendTransaction(nil, realisticTransaction())
	var tx Transaction
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		if err := DecodeTransactionAliasing(buf, &tx); err != nil {
			b.Fatal(err)
		}
	}
}

func TestInterleavedHeaderLists(t *testing.T) {
	// A writer may interleave repeated fields; each list keeps its order.
	var b []byte
	b = appendHeaders(b, 22, []Header{{"A", "1"}})
	b = appendHeaders(b, 23, []Header{{"X", "9"}})
	b = appendHeaders(b, 22, []Header{{"B", "2"}})
	b = appendString(b, 15, "GET")
	var tx Transaction
	if err := DecodeTransaction(b, &tx); err != nil {
		t.Fatal(err)
	}
	want := []Header{{"A", "1"}, {"B", "2"}}
	if !reflect.DeepEqual(tx.RequestHeaders, want) || len(tx.ResponseHeaders) != 1 || tx.Method != "GET" {
		t.Fatalf("request headers %v, response %v", tx.RequestHeaders, tx.ResponseHeaders)
	}
	// Appending to one list must not overwrite another's.
	tx.RequestHeaders = append(tx.RequestHeaders, Header{"C", "3"})
	if tx.ResponseHeaders[0].Name != "X" {
		t.Fatal("lists share capacity")
	}
}

func TestOriginRoundTrip(t *testing.T) {
	for _, o := range []Origin{{1, 0, 1}, {1 << 62, -1, 0}, {7, 11, 1 << 40}} {
		b := AppendOrigin(nil, o)
		got, err := DecodeOrigin(b)
		if err != nil || got != o || len(b) != OriginLen {
			t.Fatalf("%+v: got %+v, %v", o, got, err)
		}
	}
	if _, err := DecodeOrigin([]byte{1, 2}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short origin: %v", err)
	}
}

func TestPackRoundTrip(t *testing.T) {
	txs := []*Transaction{sampleTransaction(), realisticTransaction(), {Method: "GET", Host: "h"}}
	big := realisticTransaction()
	big.ResponseBody = make([]byte, 3<<20) // longer than the reserved length covers
	big.ResponseBody[1<<20] = 7
	txs = append(txs, big, sampleTransaction())
	var b []byte
	for _, tx := range txs {
		b = AppendPacked(b, tx)
	}
	b = protowire.AppendTag(b, 9, protowire.VarintType) // a newer writer's field
	b = protowire.AppendVarint(b, 1)
	var got []*Transaction
	err := WalkPack(b, func(raw []byte) error {
		var tx Transaction
		if err := DecodeTransaction(raw, &tx); err != nil {
			return err
		}
		got = append(got, &tx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(txs) {
		t.Fatalf("%d transactions, want %d", len(got), len(txs))
	}
	for i := range txs {
		if !reflect.DeepEqual(txs[i], got[i]) {
			t.Fatalf("transaction %d differs", i)
		}
	}
	if err := WalkPack(b[:len(b)-5], func([]byte) error { return nil }); err == nil {
		t.Fatal("a cut pack decodes")
	}
}

func FuzzWalkPack(f *testing.F) {
	f.Add(AppendPacked(AppendPacked(nil, sampleTransaction()), realisticTransaction()))
	f.Fuzz(func(t *testing.T, b []byte) {
		WalkPack(b, func(raw []byte) error {
			var tx Transaction
			DecodeTransaction(raw, &tx)
			return nil
		})
	})
}

func FuzzDecodeHeartbeat(f *testing.F) {
	f.Add(AppendHeartbeat(nil, &Heartbeat{SensorID: "s", Seq: 3, Dropped: map[string]uint64{"a": 1}, Mirrors: []Mirror{{VNI: 1}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var hb Heartbeat
		if err := DecodeHeartbeat(b, &hb); err != nil {
			return
		}
		var again Heartbeat
		if err := DecodeHeartbeat(AppendHeartbeat(nil, &hb), &again); err != nil {
			t.Fatalf("re-encoding a decoded heartbeat fails: %v", err)
		}
	})
}
