package grpcdecode

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/apiscout/apiscout/wire"
)

// catalogSet describes shop.v1.Catalog/GetItem as protoc would.
func catalogSet() *descriptorpb.FileDescriptorSet {
	str, i64 := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	field := func(name string, n int32, typ *descriptorpb.FieldDescriptorProto_Type) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(n), Type: typ, Label: opt, JsonName: proto.String(name)}
	}
	return &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{{
		Name: proto.String("shop.proto"), Package: proto.String("shop.v1"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("GetItemRequest"), Field: []*descriptorpb.FieldDescriptorProto{field("sku", 1, str)}},
			{Name: proto.String("Item"), Field: []*descriptorpb.FieldDescriptorProto{
				field("sku", 1, str), field("owner_email", 2, str), field("price", 3, i64)}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("Catalog"),
			Method: []*descriptorpb.MethodDescriptorProto{{Name: proto.String("GetItem"),
				InputType: proto.String(".shop.v1.GetItemRequest"), OutputType: proto.String(".shop.v1.Item")}}}},
	}}}
}

func frame(b []byte) []byte {
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}

func TestDecode(t *testing.T) {
	set := catalogSet()
	raw, _ := proto.Marshal(set)
	path := filepath.Join(t.TempDir(), "shop.protoset")
	os.WriteFile(path, raw, 0o600)
	d, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if d.Methods() != 1 {
		t.Fatalf("%d methods", d.Methods())
	}
	files, _ := protodesc.NewFiles(set)
	reqD, _ := files.FindDescriptorByName("shop.v1.GetItemRequest")
	itemD, _ := files.FindDescriptorByName("shop.v1.Item")
	req := dynamicpb.NewMessage(reqD.(protoreflect.MessageDescriptor))
	req.Set(req.Descriptor().Fields().ByName("sku"), protoreflect.ValueOfString("AB-1234"))
	item := dynamicpb.NewMessage(itemD.(protoreflect.MessageDescriptor))
	item.Set(item.Descriptor().Fields().ByName("sku"), protoreflect.ValueOfString("AB-1234"))
	item.Set(item.Descriptor().Fields().ByName("owner_email"), protoreflect.ValueOfString("ann@example.com"))
	item.Set(item.Descriptor().Fields().ByName("price"), protoreflect.ValueOfInt64(1999))
	rb, _ := proto.Marshal(req)
	ib, _ := proto.Marshal(item)
	tx := &wire.Transaction{Protocol: "grpc", Path: "/shop.v1.Catalog/GetItem", RequestContentType: "application/grpc",
		RequestBody: frame(rb), ResponseBody: append(frame(ib), frame(ib)...)}
	if !d.Apply(tx) {
		t.Fatal("nothing decoded")
	}
	var got map[string]any
	if err := json.Unmarshal(tx.RequestBody, &got); err != nil || got["sku"] != "AB-1234" {
		t.Fatalf("request %s: %v", tx.RequestBody, err)
	}
	lines := strings.Split(string(tx.ResponseBody), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"owner_email":"ann@example.com"`) || tx.ResponseContentType != "application/json" {
		t.Fatalf("response %q", tx.ResponseBody)
	}
	// Unknown methods, compressed or cut bodies stay as they are.
	other := &wire.Transaction{Protocol: "grpc", Path: "/shop.v1.Catalog/Other", RequestBody: frame(rb)}
	cut := &wire.Transaction{Protocol: "grpc", Path: "/shop.v1.Catalog/GetItem", RequestBody: frame(rb)[:4]}
	if d.Apply(other) || d.Apply(cut) {
		t.Fatal("decoded what it should not")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("missing protoset accepted")
	}
	os.WriteFile(path, []byte("junk"), 0o600)
	if _, err := Load(path); err == nil {
		t.Fatal("junk protoset accepted")
	}
}

func FuzzDecodeBody(f *testing.F) {
	set := catalogSet()
	files, _ := protodesc.NewFiles(set)
	itemD, _ := files.FindDescriptorByName("shop.v1.Item")
	f.Add([]byte{0, 0, 0, 0, 2, 8, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeBody(b, itemD.(protoreflect.MessageDescriptor), false)
	})
}
