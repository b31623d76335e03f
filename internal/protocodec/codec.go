// Package protocodec is the binary protobuf codec of proglog's Connect
// clients and handlers: it marshals and unmarshals with the methods
// vtprotobuf generates (gen/log/v1/log_vtproto.pb.go), which skip
// protobuf-go's reflection, and with protobuf-go for other messages.
//
// Unmarshal accepts exactly what protobuf-go accepts, with equal results.
// Marshal's output decodes to an equal message, but for two differences
// that checking would cost four times the marshal itself: a string that is
// not UTF-8 is sent (protobuf-go refuses to marshal it; the receiver, this
// codec or protobuf-go, refuses it instead), and unknown fields inside a
// google.protobuf.Timestamp are dropped (vtprotobuf's Timestamp has none).
package protocodec

import (
	"bytes"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// Name is the codec's name, the one connect's default binary codec has:
// "application/grpc+proto", "application/proto" and gRPC-Web's content
// types all map to it.
const Name = "proto"

// vtMessage is what vtprotobuf generates with features
// marshal+unmarshal+unmarshal_unsafe+size.
type vtMessage interface {
	proto.Message
	SizeVT() int
	MarshalToSizedBufferVT([]byte) (int, error)
	UnmarshalVT([]byte) error
	UnmarshalVTUnsafe([]byte) error
}

// Codec is a connect.Codec named "proto", replacing connect's default
// binary codec. The zero value is ready to use.
type Codec struct {
	// Alias makes Unmarshal copy a message's bytes once, into a buffer the
	// message owns, and point its bytes and string fields into that copy
	// instead of allocating each of them. A []byte field's capacity then
	// runs on into the fields after it: code that might append to one must
	// clip it first (slices.Clip). The copy lives as long as any field
	// that points into it.
	Alias bool
}

var _ connect.Codec = Codec{}

// WithCodec is the client and handler option that installs a Codec
// whose messages allocate their bytes and strings one by one.
func WithCodec() connect.Option { return connect.WithCodec(Codec{}) }

// WithAliasingCodec installs a Codec with Alias set: for handlers and
// clients that know where their messages' bytes go.
func WithAliasingCodec() connect.Option { return connect.WithCodec(Codec{Alias: true}) }

// Name returns "proto".
func (Codec) Name() string { return Name }

// IsBinary reports true, for connect's stableCodec (GET requests).
func (Codec) IsBinary() bool { return true }

// Marshal encodes message.
func (c Codec) Marshal(message any) ([]byte, error) {
	return c.MarshalAppend(nil, message)
}

// MarshalAppend appends message's encoding to dst; connect hands it its
// pooled buffers, so a stream's messages need no allocation of their own.
func (Codec) MarshalAppend(dst []byte, message any) ([]byte, error) {
	if a, ok := message.(Appender); ok {
		return a.AppendProto(dst)
	}
	m, ok := message.(proto.Message)
	if !ok {
		return nil, errNotProto(message)
	}
	vm, ok := m.(vtMessage)
	if !ok {
		return proto.MarshalOptions{}.MarshalAppend(dst, m)
	}
	size := vm.SizeVT()
	start := len(dst)
	dst = grow(dst, size)
	if _, err := vm.MarshalToSizedBufferVT(dst[start:]); err != nil {
		return nil, err
	}
	return dst, nil
}

// MarshalStable encodes message deterministically, for Connect's GET
// requests, whose URL holds the message. Rare: protobuf-go does it.
func (Codec) MarshalStable(message any) ([]byte, error) {
	m, ok := message.(proto.Message)
	if !ok {
		return nil, errNotProto(message)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// Appender is a message that writes its own protobuf encoding: a handler
// that holds a message's contents in another form (a store's records)
// sends an Appender (connect's StreamingHandlerConn.Send) rather than
// building the generated message only to have it marshaled. Only this
// codec knows Appender: under another (JSON) the handler sends the
// generated message. What AppendProto appends is sent as it is.
type Appender interface {
	AppendProto(dst []byte) ([]byte, error)
}

// Raw is a message kept as the bytes it arrived in. A handler that decodes
// its requests into storage it reuses receives them into a Raw
// (Raw.Receive) and decodes them itself (DecodeInto, a Decoder): the
// stream then allocates nothing per message. Only this codec knows Raw;
// under another (JSON) the handler receives messages as usual.
type Raw struct {
	Data []byte
}

// Receive reads a stream's next message into r with receive (a connect
// conn's Receive), replacing what r held: connect does not call the codec
// for an empty message, which would otherwise leave the previous one's
// bytes in r.
func (r *Raw) Receive(receive func(any) error) error {
	r.Data = r.Data[:0]
	return receive(r)
}

// DecodeError is what connect answers for a message its codec cannot
// decode, for a caller that decodes a Raw's bytes itself.
func DecodeError(err error) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("unmarshal message: %w", err))
}

// Unmarshal decodes data into message, replacing its contents. The
// message copies what it keeps: connect reuses data's buffer afterwards.
// Into a *Raw it copies data, reusing Raw's capacity.
func (c Codec) Unmarshal(data []byte, message any) error {
	if r, ok := message.(*Raw); ok {
		r.Data = append(r.Data[:0], data...)
		return nil
	}
	m, ok := message.(proto.Message)
	if !ok {
		return errNotProto(message)
	}
	// vtprotobuf's decoder accepts some bytes protobuf-go rejects (strings
	// that are not UTF-8, overlong varints, unmatched groups) and rejects
	// some it accepts (a known field with another wire type, which
	// protobuf-go keeps as unknown). It decodes only what wellFormed
	// proves both read alike; protobuf-go decodes the rest.
	var rc *recordCounts
	r, isResponse := m.(*logv1.ConsumeStreamResponse)
	if isResponse {
		rc = new(recordCounts)
	}
	return unmarshal(data, m, rc, func(vm vtMessage) error {
		proto.Reset(m) // UnmarshalVT merges; proto.Unmarshal replaces
		if isResponse {
			new(recordSlabs).layout(rc, r)
		}
		if c.Alias {
			return vm.UnmarshalVTUnsafe(bytes.Clone(data))
		}
		return vm.UnmarshalVT(data)
	})
}

// unmarshal decodes data into m with vt when wellFormed proves that
// vtprotobuf reads it as protobuf-go does, and with protobuf-go (which
// replaces m's contents and copies what it keeps) otherwise or if vt
// fails. With rc set (m is a ConsumeStreamResponse), the check counts
// what m's records need into rc, for vt.
func unmarshal(data []byte, m proto.Message, rc *recordCounts, vt func(vtMessage) error) error {
	if vm, ok := m.(vtMessage); ok && wellFormed(data, m.ProtoReflect().Descriptor(), rc) && vt(vm) == nil {
		return nil
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", m, err)
	}
	return nil
}

// resetter is a message generated with vtprotobuf's pool feature: ResetVT
// empties it but keeps its repeated fields' messages and capacity, which
// UnmarshalVT then decodes into instead of allocating.
type resetter interface{ ResetVT() }

// DecodeInto decodes data into m, replacing its contents, as Unmarshal
// with Alias does but without the copy: m's bytes and string fields point
// into data, which must not change while m is in use. A message with
// ResetVT is reset with it, so a message decoded into again and again
// reuses its repeated messages. What DecodeInto accepts, and the message it
// makes, is what protobuf-go's would.
//
// ResetVT hands a pooled singular field (the Record of a
// ProduceStreamRequest or of a ConsumeStreamResponse)
// to vtprotobuf's pool with its bytes still pointing into the data it was
// decoded from; a caller that reuses that data's buffer sets such fields
// to nil first.
func DecodeInto(data []byte, m proto.Message) error {
	return unmarshal(data, m, nil, func(vm vtMessage) error {
		if r, ok := m.(resetter); ok {
			r.ResetVT()
		} else {
			proto.Reset(m)
		}
		return vm.UnmarshalVTUnsafe(data)
	})
}

// grow extends dst by n bytes, reallocating only when its capacity is short.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst[:len(dst)+n]
	}
	out := make([]byte, len(dst)+n, 2*cap(dst)+n)
	copy(out, dst)
	return out
}

func errNotProto(message any) error {
	return fmt.Errorf("%T doesn't implement proto.Message", message)
}
