package protocodec

import (
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// wellFormed reports whether b is an encoding of md that protobuf-go
// accepts and vtprotobuf reads the same way: every tag valid, every known
// field in the wire type vtprotobuf expects, every string UTF-8, every
// unknown field complete. It is stricter than protobuf-go (a false only
// sends the bytes to protobuf-go) and allocates nothing; its cost is one
// pass over b, far less than the decoding it guards.
func wellFormed(b []byte, md protoreflect.MessageDescriptor) bool {
	return shapeOf(md).check(b, 0)
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
	// mayDrop: noUnknown here or in a message under this one, so
	// vtprotobuf's Marshal would drop unknown fields held there.
	mayDrop bool
}

type field struct {
	fd   protoreflect.FieldDescriptor
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
	s.setMayDrop(map[*shape]bool{})
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
		s.fields[fd.Number()].fd = fd
	}
	return s
}

// setMayDrop sets mayDrop in s and the shapes under it; a message met
// again through recursion counts as dropping, to be safe.
func (s *shape) setMayDrop(visiting map[*shape]bool) bool {
	if done, ok := visiting[s]; ok {
		return done || s.mayDrop
	}
	visiting[s] = true
	s.mayDrop = s.noUnknown
	for _, f := range s.fields {
		if f.kind == messageField && f.msg.setMayDrop(visiting) {
			s.mayDrop = true
		}
	}
	visiting[s] = false
	return s.mayDrop
}

// keepsUnknown reports whether vtprotobuf's encoding of m keeps all of
// m's unknown fields: none is held in a well-known type.
func (s *shape) keepsUnknown(m protoreflect.Message) bool {
	if !s.mayDrop {
		return true
	}
	if s.noUnknown && len(m.GetUnknown()) > 0 {
		return false
	}
	for _, f := range s.fields {
		if f.kind != messageField || !f.msg.mayDrop || !m.Has(f.fd) {
			continue
		}
		if f.fd.IsList() {
			l := m.Get(f.fd).List()
			for i := range l.Len() {
				if !f.msg.keepsUnknown(l.Get(i).Message()) {
					return false
				}
			}
		} else if !f.msg.keepsUnknown(m.Get(f.fd).Message()) {
			return false
		}
	}
	return true
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
	if fd.IsMap() || fd.ContainingOneof() != nil {
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

func (s *shape) check(b []byte, depth int) bool {
	if s.unhandled || depth > maxDepth {
		return false
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return false
		}
		b = b[n:]
		var f field
		if int(num) < len(s.fields) {
			f = s.fields[num]
		}
		if f.kind == unknownField {
			if s.noUnknown {
				return false
			}
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return false
			}
			b = b[n:]
			continue
		}
		if f.kind == unhandledField || typ != f.wire {
			return false
		}
		switch typ {
		case protowire.VarintType:
			_, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			_, n = protowire.ConsumeFixed32(b)
		case protowire.Fixed64Type:
			_, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			switch f.kind {
			case stringField:
				if !utf8.Valid(v) {
					return false
				}
			case messageField:
				if !f.msg.check(v, depth+1) {
					return false
				}
			}
		}
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}
