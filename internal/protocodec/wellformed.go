package protocodec

import (
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// wellFormed reports whether b is an encoding of md that protobuf-go
// accepts and vtprotobuf reads the same way: every tag valid and in its
// shortest encoding, every known field in the wire type vtprotobuf
// expects, every string UTF-8, every unknown field complete and none in a
// well-known type. It is stricter than protobuf-go (false only sends the
// bytes to protobuf-go) and allocates nothing: one pass over b, far less
// than the decoding it guards. With rc set (md is ConsumeStreamResponse)
// the same pass counts what the response's records need into it.
func wellFormed(b []byte, md protoreflect.MessageDescriptor, rc *recordCounts) bool {
	if rc != nil {
		rc.reset()
	}
	return shapeOf(md).check(b, 0, rc)
}

// maxDepth is protobuf-go's default recursion limit.
const maxDepth = 10000

// shape is what wellFormed needs to know of a message's fields.
type shape struct {
	fields    []field // by field number; a zero field is unknown
	unhandled bool    // a field number too large for fields: protobuf-go decodes
	// Well-known types such as Timestamp are decoded by vtprotobuf's
	// types/known packages, which drop unknown fields protobuf-go keeps.
	noUnknown bool
}

type field struct {
	wire protowire.Type
	kind uint8
	msg  *shape // kind message
}

const (
	unknownField uint8 = iota
	scalarField        // varint, fixed32 or fixed64: any value
	bytesField
	stringField
	messageField
	unhandledField // groups, maps, oneofs, packed scalars: protobuf-go decodes
)

// maxFieldNumber bounds shape.fields; messages with larger field numbers
// are left to protobuf-go.
const maxFieldNumber = 1 << 10

var shapes sync.Map // protoreflect.MessageDescriptor → *shape

func shapeOf(md protoreflect.MessageDescriptor) *shape {
	if s, ok := shapes.Load(md); ok {
		return s.(*shape)
	}
	s := buildShape(md, map[protoreflect.MessageDescriptor]*shape{})
	actual, _ := shapes.LoadOrStore(md, s)
	return actual.(*shape)
}

// buildShape describes md and the messages in its fields; seen ends
// recursion in recursive messages.
func buildShape(md protoreflect.MessageDescriptor, seen map[protoreflect.MessageDescriptor]*shape) *shape {
	if s, ok := seen[md]; ok {
		return s
	}
	s := &shape{noUnknown: !hasVTMethods(md)}
	seen[md] = s
	fds := md.Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		if fd.Number() >= maxFieldNumber {
			s.unhandled = true
			return s
		}
		for len(s.fields) <= int(fd.Number()) {
			s.fields = append(s.fields, field{})
		}
		s.fields[fd.Number()] = fieldOf(fd, seen)
	}
	return s
}

// hasVTMethods reports whether md's Go type has vtprotobuf's methods.
func hasVTMethods(md protoreflect.MessageDescriptor) bool {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil {
		return false
	}
	_, ok := mt.New().Interface().(vtMessage)
	return ok
}

func fieldOf(fd protoreflect.FieldDescriptor, seen map[protoreflect.MessageDescriptor]*shape) field {
	// A proto3 optional field sits in a synthetic oneof of its own; both
	// decoders read it as the plain field it is on the wire (ProduceStream
	// requests that name a partition have one).
	if od := fd.ContainingOneof(); fd.IsMap() || (od != nil && !od.IsSynthetic()) {
		return field{kind: unhandledField}
	}
	switch fd.Kind() {
	case protoreflect.MessageKind:
		return field{wire: protowire.BytesType, kind: messageField, msg: buildShape(fd.Message(), seen)}
	case protoreflect.StringKind:
		return field{wire: protowire.BytesType, kind: stringField}
	case protoreflect.BytesKind:
		return field{wire: protowire.BytesType, kind: bytesField}
	case protoreflect.GroupKind:
		return field{kind: unhandledField}
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return field{wire: protowire.Fixed32Type, kind: scalarField}
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return field{wire: protowire.Fixed64Type, kind: scalarField}
	default: // the varint kinds
		return field{wire: protowire.VarintType, kind: scalarField}
	}
}

// check checks b as an encoding of s. With rc set, b is a
// ConsumeStreamResponse (depth 0) or one of its records (depth 1), whose
// records' headers and times rc counts.
func (s *shape) check(b []byte, depth int, rc *recordCounts) bool {
	if s.unhandled || depth > maxDepth {
		return false
	}
	for len(b) > 0 {
		// One-byte tags, lengths and varints, nearly all of them, skip
		// protowire's calls: this loop runs for every field of every record.
		var num protowire.Number
		var typ protowire.Type
		if b[0] < 0x80 {
			num, typ = protowire.Number(b[0]>>3), protowire.Type(b[0]&7)
			if num == 0 {
				return false
			}
			b = b[1:]
		} else {
			var n int
			num, typ, n = protowire.ConsumeTag(b)
			// protobuf-go keeps an unknown field with its tag re-encoded,
			// vtprotobuf as it came: they agree on the shortest encoding.
			if n < 0 || num > protowire.MaxValidNumber || n != protowire.SizeTag(num) {
				return false
			}
			b = b[n:]
		}
		var f field
		if int(num) < len(s.fields) {
			f = s.fields[num]
		}
		if f.kind == unknownField {
			if s.noUnknown {
				return false
			}
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return false
			}
			b = b[n:]
			continue
		}
		if f.kind == unhandledField || typ != f.wire {
			return false
		}
		var n int
		switch typ {
		case protowire.VarintType:
			if len(b) > 0 && b[0] < 0x80 {
				n = 1
			} else {
				_, n = protowire.ConsumeVarint(b)
			}
		case protowire.Fixed32Type:
			_, n = protowire.ConsumeFixed32(b)
		case protowire.Fixed64Type:
			_, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			var v []byte
			if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) {
				v, n = b[1:1+b[0]], 1+int(b[0])
			} else if v, n = protowire.ConsumeBytes(b); n < 0 {
				return false
			}
			switch f.kind {
			case stringField:
				if !utf8.Valid(v) {
					return false
				}
			case messageField:
				var sub *recordCounts
				if rc != nil && depth == 0 && num == responseRecords {
					rc.add(len(b), n)
					sub = rc
				}
				if !f.msg.check(v, depth+1, sub) {
					return false
				}
			}
			if rc != nil && depth == 1 {
				rc.note(num)
			}
		}
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}
