package catalog

import (
	"fmt"
	"time"
)

// Command is one change to the catalogue: *CreateTopic, *UpdateTopic,
// *DeleteTopic or *SetReplicas, as DecodeCommand returns it.
type Command interface {
	encode(w *writer)
	decode(r *reader)
}

// The first byte of an encoded command names its type and format; a new
// format gets a new byte, so old entries in a Raft log still decode.
const (
	cmdCreate      byte = 0x01
	cmdUpdate      byte = 0x02
	cmdDelete      byte = 0x03
	cmdSetReplicas byte = 0x04
)

// CreateTopic creates a topic of len(Replicas) partitions. The proposer
// places the replicas (Place), so every node applies the same placement.
type CreateTopic struct {
	Name              string
	ReplicationFactor int
	Config            Config
	// Replicas holds each partition's node IDs, the preferred leader first.
	Replicas [][]string
}

// UpdateTopic sets the settings whose pointers are not nil.
type UpdateTopic struct {
	Name           string
	RetentionBytes *uint64
	RetentionAge   *time.Duration
	MaxRecordBytes *uint32
}

// DeleteTopic deletes a topic.
type DeleteTopic struct{ Name string }

// SetReplicas replaces the replicas of one partition, to move it. A move
// adds the new node before it drops the old, so the list may be longer
// than the replication factor, never shorter.
type SetReplicas struct {
	Name      string
	Partition int
	Replicas  []string
	// TopicID, if not 0, must be the topic's ID: a mover's command for a
	// topic deleted and created again under its name is refused.
	TopicID uint64
}

// EncodeCreate encodes c for the system group.
func EncodeCreate(c CreateTopic) []byte { return encodeCommand(cmdCreate, &c) }

// EncodeUpdate encodes u for the system group.
func EncodeUpdate(u UpdateTopic) []byte { return encodeCommand(cmdUpdate, &u) }

// EncodeDelete encodes the deletion of topic name for the system group.
func EncodeDelete(name string) []byte { return encodeCommand(cmdDelete, &DeleteTopic{Name: name}) }

// EncodeSetReplicas encodes s for the system group.
func EncodeSetReplicas(s SetReplicas) []byte { return encodeCommand(cmdSetReplicas, &s) }

func encodeCommand(typ byte, c Command) []byte {
	w := writer{b: make([]byte, 0, 64)}
	w.byte(typ)
	c.encode(&w)
	return w.b
}

// DecodeCommand decodes an encoded command. It refuses, with an error
// wrapping ErrInvalid, anything an Encode function would not have
// produced.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty command", ErrInvalid)
	}
	var c Command
	switch b[0] {
	case cmdCreate:
		c = new(CreateTopic)
	case cmdUpdate:
		c = new(UpdateTopic)
	case cmdDelete:
		c = new(DeleteTopic)
	case cmdSetReplicas:
		c = new(SetReplicas)
	default:
		return nil, fmt.Errorf("%w: unknown command type 0x%02x", ErrInvalid, b[0])
	}
	r := reader{b: b[1:]}
	c.decode(&r)
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("decoding command 0x%02x: %w", b[0], err)
	}
	return c, nil
}

func (c *CreateTopic) encode(w *writer) {
	w.str(c.Name)
	w.int(c.ReplicationFactor)
	w.config(c.Config)
	w.count(len(c.Replicas))
	for _, rs := range c.Replicas {
		w.strs(rs)
	}
}

func (c *CreateTopic) decode(r *reader) {
	c.Name = r.str()
	c.ReplicationFactor = r.int()
	c.Config = r.config()
	if n := r.count(); n > 0 {
		c.Replicas = make([][]string, n)
		for i := range c.Replicas {
			c.Replicas[i] = r.strs()
		}
	}
}

// The UpdateTopic flags byte: which settings follow, in this order.
const (
	setRetentionBytes = 1 << iota
	setRetentionAge
	setMaxRecordBytes
	setAll = setRetentionBytes | setRetentionAge | setMaxRecordBytes
)

func (u *UpdateTopic) encode(w *writer) {
	w.str(u.Name)
	var flags byte
	if u.RetentionBytes != nil {
		flags |= setRetentionBytes
	}
	if u.RetentionAge != nil {
		flags |= setRetentionAge
	}
	if u.MaxRecordBytes != nil {
		flags |= setMaxRecordBytes
	}
	w.byte(flags)
	if u.RetentionBytes != nil {
		w.uvarint(*u.RetentionBytes)
	}
	if u.RetentionAge != nil {
		w.varint(int64(*u.RetentionAge))
	}
	if u.MaxRecordBytes != nil {
		w.uvarint(uint64(*u.MaxRecordBytes))
	}
}

func (u *UpdateTopic) decode(r *reader) {
	u.Name = r.str()
	flags := r.byte()
	if flags&^setAll != 0 {
		r.fail("unknown update flags 0x%02x", flags)
		return
	}
	if flags&setRetentionBytes != 0 {
		v := r.uvarint()
		u.RetentionBytes = &v
	}
	if flags&setRetentionAge != 0 {
		v := time.Duration(r.varint())
		u.RetentionAge = &v
	}
	if flags&setMaxRecordBytes != 0 {
		v := r.uvarint()
		if v > 1<<32-1 {
			r.fail("max record bytes %d out of range", v)
			return
		}
		m := uint32(v)
		u.MaxRecordBytes = &m
	}
}

func (d *DeleteTopic) encode(w *writer) { w.str(d.Name) }
func (d *DeleteTopic) decode(r *reader) { d.Name = r.str() }

func (s *SetReplicas) encode(w *writer) {
	w.str(s.Name)
	w.int(s.Partition)
	w.strs(s.Replicas)
	w.uvarint(s.TopicID)
}

func (s *SetReplicas) decode(r *reader) {
	s.Name = r.str()
	s.Partition = r.int()
	s.Replicas = r.strs()
	s.TopicID = r.uvarint()
}
