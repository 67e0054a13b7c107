// Package grpcpeer is a real grpc-go server and client setup for tests
// that need gRPC traffic without generated stubs: messages are opaque
// bytes (a raw codec), every method is answered.
package grpcpeer

import (
	"io"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

// Codec passes *[]byte messages through unchanged.
type Codec struct{}

// Marshal implements encoding.Codec.
func (Codec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }

// Unmarshal implements encoding.Codec.
func (Codec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}

// Name implements encoding.Codec.
func (Codec) Name() string { return "raw" }

func init() { encoding.RegisterCodec(Codec{}) }

// NewServer answers every method: a method ending in /Missing with
// NotFound, any other with one reply ("reply-<i>", or reply when set) per
// request message.
func NewServer(reply []byte) *grpc.Server {
	return grpc.NewServer(grpc.ForceServerCodec(Codec{}), grpc.UnknownServiceHandler(func(_ any, s grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(s)
		n := 0
		for {
			var in []byte
			if err := s.RecvMsg(&in); err == io.EOF {
				break
			} else if err != nil {
				return err
			}
			n++
		}
		if strings.HasSuffix(method, "/Missing") {
			return status.Error(codes.NotFound, "no such item")
		}
		for i := 0; i < n; i++ {
			out := reply
			if out == nil {
				out = []byte("reply-" + strconv.Itoa(i))
			}
			if err := s.SendMsg(&out); err != nil {
				return err
			}
		}
		return nil
	}))
}

// DialOptions make a plaintext client that sends raw messages.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(nil), grpc.CallContentSubtype("raw"))}
}
