// Package grpcdecode turns the protobuf messages of gRPC calls into JSON
// when the operator supplies the services' descriptors (a .protoset file,
// as written by `protoc --descriptor_set_out --include_imports` or
// `buf build -o`), so the analyzer can infer schemas and find sensitive
// fields in gRPC traffic as it does for JSON APIs. Without a descriptor a
// call keeps its message sizes and counts only.
package grpcdecode

import (
	"encoding/binary"
	"fmt"
	"os"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/apiscout/apiscout/wire"
)

// Decoder maps gRPC methods to their message descriptors.
type Decoder struct {
	methods map[string]protoreflect.MethodDescriptor // "/pkg.Service/Method"
}

// Load reads a FileDescriptorSet.
func Load(path string) (*Decoder, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("protoset: %w", err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("protoset %s: %w", path, err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("protoset %s: %w (was it built with --include_imports?)", path, err)
	}
	d := &Decoder{methods: map[string]protoreflect.MethodDescriptor{}}
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		svcs := fd.Services()
		for i := 0; i < svcs.Len(); i++ {
			s := svcs.Get(i)
			ms := s.Methods()
			for j := 0; j < ms.Len(); j++ {
				m := ms.Get(j)
				d.methods["/"+string(s.FullName())+"/"+string(m.Name())] = m
			}
		}
		return true
	})
	return d, nil
}

// Methods is the number of gRPC methods known.
func (d *Decoder) Methods() int { return len(d.methods) }

var marshal = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false}

// Apply decodes the request and response bodies of a gRPC transaction in
// place: each body becomes JSON (one object per message, one per line) and
// its content type application/json; the original content type is kept in
// Extra as grpc.content_type. It reports whether it decoded anything.
// Compressed messages and bodies cut at the body limit stay as they are.
func (d *Decoder) Apply(tx *wire.Transaction) bool {
	if tx.Protocol != "grpc" {
		return false
	}
	m, ok := d.methods[tx.Path]
	if !ok {
		return false
	}
	decoded := false
	if j, ok := decodeBody(tx.RequestBody, m.Input(), tx.Flags.Has(wire.FlagRequestTruncated)); ok {
		tx.Extra = append(tx.Extra, wire.Header{Name: "grpc.content_type", Value: tx.RequestContentType})
		tx.RequestBody, tx.RequestContentType, decoded = j, "application/json", true
	}
	if j, ok := decodeBody(tx.ResponseBody, m.Output(), tx.Flags.Has(wire.FlagResponseTruncated)); ok {
		tx.ResponseBody, tx.ResponseContentType, decoded = j, "application/json", true
	}
	return decoded
}

func decodeBody(b []byte, md protoreflect.MessageDescriptor, truncated bool) ([]byte, bool) {
	if truncated || len(b) < 5 {
		return nil, false
	}
	var lines []string
	for len(b) >= 5 {
		compressed := b[0] == 1
		n := int(binary.BigEndian.Uint32(b[1:]))
		if n > len(b)-5 || compressed {
			return nil, false
		}
		msg := dynamicpb.NewMessage(md)
		if err := (proto.UnmarshalOptions{Resolver: protoregistry.GlobalTypes}).Unmarshal(b[5:5+n], msg); err != nil {
			return nil, false
		}
		j, err := marshal.Marshal(msg)
		if err != nil {
			return nil, false
		}
		lines = append(lines, string(j))
		b = b[5+n:]
	}
	if len(b) != 0 || len(lines) == 0 {
		return nil, false
	}
	if len(lines) == 1 {
		return []byte(lines[0]), true
	}
	return []byte(strings.Join(lines, "\n")), true
}
