package protocodec_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/internal/protocodec"
)

// messages are the types the fuzz target decodes, by the input's first byte.
var messages = []func() proto.Message{
	func() proto.Message { return &logv1.ProduceStreamRequest{} },
	func() proto.Message { return &logv1.ConsumeStreamResponse{} },
	func() proto.Message { return &logv1.ProduceBatchRequest{} },
	func() proto.Message { return &logv1.ConsumeStreamRequest{} },
	func() proto.Message { return &logv1.GetServersResponse{} },
	func() proto.Message { return &logv1.DescribeTopicResponse{} },
	func() proto.Message { return &timestamppb.Timestamp{} }, // no vtproto methods
}

func keyedRecord(offset uint64) *logv1.Record {
	return &logv1.Record{
		Value:  bytes.Repeat([]byte{'v'}, 100),
		Offset: offset,
		Key:    []byte("0123456789abcdef"),
		Headers: []*logv1.Header{
			{Key: "content-type", Value: []byte("text/plain")},
			{Key: "trace", Value: []byte("01234567")},
		},
		Time: timestamppb.New(time.Date(2026, 12, 1, 4, 0, 0, 123456789, time.UTC)),
	}
}

// seeds are real messages of each type in messages, in order.
func seeds() []proto.Message {
	partition := uint32(3)
	return []proto.Message{
		&logv1.ProduceStreamRequest{Records: []*logv1.Record{keyedRecord(0), {Value: []byte("plain")}}, Topic: "orders", Partition: &partition},
		&logv1.ConsumeStreamResponse{Records: []*logv1.Record{keyedRecord(7), keyedRecord(8), {Value: []byte("plain"), Offset: 9}}},
		&logv1.ProduceBatchRequest{Records: []*logv1.Record{keyedRecord(0)}, Topic: "t"},
		&logv1.ConsumeStreamRequest{Offset: 5, MaxBatch: 1000, FromTime: timestamppb.Now(), Topic: "t", Partition: 2},
		&logv1.GetServersResponse{Servers: []*logv1.Server{{Id: "n1", RpcAddr: "127.0.0.1:8400", IsLeader: true, PartitionLeaders: 4}}},
		&logv1.DescribeTopicResponse{},
		timestamppb.Now(),
	}
}

func FuzzUnmarshal(f *testing.F) {
	for i, m := range seeds() {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(i), b)
		// A known field in the wrong wire type, which protobuf-go keeps
		// as an unknown field and vtprotobuf rejects.
		f.Add(byte(i), protowire.AppendVarint(protowire.AppendTag(bytes.Clone(b), 1, protowire.BytesType), 0))
	}
	f.Fuzz(func(t *testing.T, which byte, data []byte) {
		for _, codec := range []protocodec.Codec{{}, {Alias: true}} {
			t.Run(fmt.Sprintf("alias=%v", codec.Alias), func(t *testing.T) { fuzzCodec(t, codec, which, data) })
		}
		t.Run("DecodeInto", func(t *testing.T) { fuzzDecodeInto(t, which, data) })
		t.Run("Decoder", func(t *testing.T) { fuzzDecoder(t, data) })
	})
}

// fuzzDecoder decodes a seed response, data and the seed again with one
// Decoder, each from a buffer of its own: each time the result is
// protobuf-go's, whatever the previous decode left in the reused memory.
func fuzzDecoder(t *testing.T, data []byte) {
	seed := &logv1.ConsumeStreamResponse{Records: []*logv1.Record{keyedRecord(1), {Offset: 2, Value: []byte("v")}, keyedRecord(3)}}
	seedBytes, err := proto.Marshal(seed)
	if err != nil {
		t.Fatal(err)
	}
	want := &logv1.ConsumeStreamResponse{}
	wantErr := proto.Unmarshal(data, want)
	var d protocodec.Decoder
	for i, in := range [][]byte{seedBytes, data, seedBytes} {
		got, err := d.Decode(bytes.Clone(in))
		checkDecode(t, "Decode", i, got, err, want, wantErr, seed)
	}
}

// checkDecode checks decode i of a seed, the fuzzer's data and the seed
// again: the data's result against protobuf-go's (want, wantErr), the
// seed's against the seed.
func checkDecode(t *testing.T, what string, i int, got proto.Message, err error, want proto.Message, wantErr error, seed proto.Message) {
	t.Helper()
	switch {
	case i == 1 && (err == nil) != (wantErr == nil):
		t.Fatalf("%s: error %v, proto.Unmarshal: error %v", what, err, wantErr)
	case i == 1 && err == nil && !proto.Equal(got, want):
		t.Fatalf("%s: %v, proto.Unmarshal: %v", what, got, want)
	case i != 1 && (err != nil || !proto.Equal(got, seed)):
		t.Fatalf("%s of the seed (decode %d): %v, %v; want %v", what, i, got, err, seed)
	}
}

// fuzzDecodeInto decodes data through a Raw into a message that held
// another first (a reused message keeps its records and headers to decode
// into), and then that other again: each time the result is protobuf-go's.
func fuzzDecodeInto(t *testing.T, which byte, data []byte) {
	newMessage := messages[int(which)%len(messages)]
	seed := seeds()[int(which)%len(messages)]
	seedBytes, err := proto.Marshal(seed)
	if err != nil {
		t.Fatal(err)
	}
	want := newMessage()
	wantErr := proto.Unmarshal(data, want)

	var codec protocodec.Codec
	var raw protocodec.Raw
	got := newMessage()
	for i, in := range [][]byte{seedBytes, data, seedBytes} {
		buf := bytes.Clone(in) // connect's buffer, reused after Unmarshal
		if err := codec.Unmarshal(buf, &raw); err != nil {
			t.Fatalf("Unmarshal into a Raw: %v", err)
		}
		clear(buf)
		if !bytes.Equal(raw.Data, in) {
			t.Fatalf("Raw holds %x, want %x", raw.Data, in)
		}
		// As DecodeInto asks of a caller reusing raw.
		switch r := got.(type) {
		case *logv1.ProduceStreamRequest:
			r.Record = nil
		case *logv1.ConsumeStreamResponse:
			r.Record = nil
		}
		err := protocodec.DecodeInto(raw.Data, got)
		checkDecode(t, "DecodeInto", i, got, err, want, wantErr, seed)
	}
}

func fuzzCodec(t *testing.T, codec protocodec.Codec, which byte, data []byte) {
	newMessage := messages[int(which)%len(messages)]
	want := newMessage()
	wantErr := proto.Unmarshal(data, want)

	got := newMessage()
	// Unmarshal replaces what the message held, as proto.Unmarshal does.
	proto.Merge(got, seeds()[int(which)%len(messages)])
	// Connect reuses its buffer after Unmarshal returns.
	buf := bytes.Clone(data)
	err := codec.Unmarshal(buf, got)
	clear(buf)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("Unmarshal: error %v, proto.Unmarshal: error %v", err, wantErr)
	}
	if err != nil {
		return
	}
	if !proto.Equal(got, want) {
		t.Fatalf("Unmarshal: %v, proto.Unmarshal: %v", got, want)
	}

	prefix := []byte("prefix")
	out, err := codec.MarshalAppend(bytes.Clone(prefix), got)
	if err != nil {
		t.Fatalf("MarshalAppend: %v", err)
	}
	if !bytes.HasPrefix(out, prefix) {
		t.Fatalf("MarshalAppend overwrote dst: %q", out[:len(prefix)])
	}
	again := newMessage()
	if err := proto.Unmarshal(out[len(prefix):], again); err != nil {
		t.Fatalf("proto.Unmarshal of MarshalAppend's output: %v", err)
	}
	// The codec's one documented loss: unknown fields in a Timestamp.
	dropTimestampUnknown(want.ProtoReflect())
	if !proto.Equal(again, want) {
		t.Fatalf("MarshalAppend then proto.Unmarshal: %v, want %v", again, want)
	}
}

// TestMarshalNotUTF8: protobuf-go refuses to marshal a string that is
// not UTF-8; the codec sends it, and the receiver refuses it.
func TestMarshalNotUTF8(t *testing.T) {
	bad := keyedRecord(0)
	bad.Headers[1].Key = "\xff"
	m := &logv1.ProduceStreamRequest{Records: []*logv1.Record{keyedRecord(1), bad}}
	if _, err := proto.Marshal(m); err == nil {
		t.Fatal("proto.Marshal accepted a string that is not UTF-8")
	}
	var codec protocodec.Codec
	b, err := codec.Marshal(m)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if err := proto.Unmarshal(b, &logv1.ProduceStreamRequest{}); err == nil {
		t.Error("proto.Unmarshal accepted a string that is not UTF-8")
	}
	if err := codec.Unmarshal(b, &logv1.ProduceStreamRequest{}); err == nil {
		t.Error("Unmarshal accepted a string that is not UTF-8")
	}
}

// dropTimestampUnknown clears the unknown fields of the Timestamps in
// m's fields, which vtprotobuf marshals.
func dropTimestampUnknown(m protoreflect.Message) {
	drop := func(m protoreflect.Message) {
		if m.Descriptor().FullName() == "google.protobuf.Timestamp" {
			m.SetUnknown(nil)
		} else {
			dropTimestampUnknown(m)
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil || fd.IsMap():
		case fd.IsList():
			for i := range v.List().Len() {
				drop(v.List().Get(i).Message())
			}
		default:
			drop(v.Message())
		}
		return true
	})
}

func TestNotProto(t *testing.T) {
	var codec protocodec.Codec
	if _, err := codec.Marshal("not a message"); err == nil {
		t.Error("Marshal of a string: no error")
	}
	var s string
	if err := codec.Unmarshal([]byte{}, &s); err == nil {
		t.Error("Unmarshal into a string: no error")
	}
}

func TestMarshalStable(t *testing.T) {
	var codec protocodec.Codec
	m := &logv1.ConsumeStreamRequest{Offset: 5, Topic: "t", FromTime: timestamppb.Now()}
	got, err := codec.MarshalStable(m)
	if err != nil {
		t.Fatal(err)
	}
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("MarshalStable = %x, want %x", got, want)
	}
}

// TestRawReceive: Receive replaces what a Raw held, also with an empty
// message, for which connect does not call the codec.
func TestRawReceive(t *testing.T) {
	codec := protocodec.Codec{}
	raw := protocodec.Raw{Data: []byte("the previous message")}
	if err := raw.Receive(func(m any) error { return codec.Unmarshal([]byte("next"), m) }); err != nil || string(raw.Data) != "next" {
		t.Fatalf("Receive: %q, %v; want \"next\"", raw.Data, err)
	}
	if err := raw.Receive(func(any) error { return nil }); err != nil || len(raw.Data) != 0 {
		t.Fatalf("Receive of an empty message: %q, %v; want no bytes", raw.Data, err)
	}
	failed := errors.New("stream broke")
	if err := raw.Receive(func(any) error { return failed }); !errors.Is(err, failed) {
		t.Fatalf("Receive: %v, want %v", err, failed)
	}
	if err := protocodec.DecodeError(failed); connect.CodeOf(err) != connect.CodeInvalidArgument || !errors.Is(err, failed) {
		t.Fatalf("DecodeError: %v (code %v), want invalid_argument wrapping %v", err, connect.CodeOf(err), failed)
	}
}
