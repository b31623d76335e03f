package catalog

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

// sampleCommands covers every command type and every optional field.
func sampleCommands() [][]byte {
	return [][]byte{
		EncodeCreate(CreateTopic{Name: "orders", ReplicationFactor: 3,
			Config:   Config{RetentionBytes: 1 << 30, RetentionAge: 7 * 24 * time.Hour, MaxRecordBytes: 1 << 20},
			Replicas: [][]string{{"a", "b", "c"}, {"b", "c", "a"}}}),
		EncodeCreate(CreateTopic{}),
		EncodeCreate(CreateTopic{Name: "neg", ReplicationFactor: -1, Config: Config{RetentionAge: -1}}),
		EncodeUpdate(UpdateTopic{Name: "orders"}),
		EncodeUpdate(UpdateTopic{Name: "orders", RetentionBytes: ptr(uint64(1 << 63)), RetentionAge: ptr(time.Duration(-5)), MaxRecordBytes: ptr(uint32(1<<32 - 1))}),
		EncodeUpdate(UpdateTopic{Name: "orders", RetentionAge: ptr(time.Hour)}),
		EncodeDelete("orders"),
		EncodeSetReplicas(SetReplicas{Name: "orders", Partition: 1, Replicas: []string{"c", "d", "a"}, TopicID: 12}),
		EncodeSetReplicas(SetReplicas{Name: "orders", Partition: -3}),
	}
}

func TestCommandRoundTrip(t *testing.T) {
	want := []Command{
		&CreateTopic{Name: "orders", ReplicationFactor: 3,
			Config:   Config{RetentionBytes: 1 << 30, RetentionAge: 7 * 24 * time.Hour, MaxRecordBytes: 1 << 20},
			Replicas: [][]string{{"a", "b", "c"}, {"b", "c", "a"}}},
		&CreateTopic{},
		&CreateTopic{Name: "neg", ReplicationFactor: -1, Config: Config{RetentionAge: -1}},
		&UpdateTopic{Name: "orders"},
		&UpdateTopic{Name: "orders", RetentionBytes: ptr(uint64(1 << 63)), RetentionAge: ptr(time.Duration(-5)), MaxRecordBytes: ptr(uint32(1<<32 - 1))},
		&UpdateTopic{Name: "orders", RetentionAge: ptr(time.Hour)},
		&DeleteTopic{Name: "orders"},
		&SetReplicas{Name: "orders", Partition: 1, Replicas: []string{"c", "d", "a"}, TopicID: 12},
		&SetReplicas{Name: "orders", Partition: -3},
	}
	for i, b := range sampleCommands() {
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("command %d = %#v, want %#v", i, got, want[i])
		}
	}
}

// The bytes of one command, as the package doc describes them.
func TestCommandBytes(t *testing.T) {
	got := EncodeCreate(CreateTopic{Name: "ab", ReplicationFactor: 2,
		Config: Config{RetentionBytes: 300, RetentionAge: -1, MaxRecordBytes: 5}, Replicas: [][]string{{"x", "y"}}})
	want := []byte{0x01, 2, 'a', 'b', 4, 0xac, 0x02, 1, 5, 1, 2, 1, 'x', 1, 'y'}
	if !bytes.Equal(got, want) {
		t.Errorf("EncodeCreate = % x, want % x", got, want)
	}
	got = EncodeUpdate(UpdateTopic{Name: "ab", MaxRecordBytes: ptr(uint32(7))})
	want = []byte{0x02, 2, 'a', 'b', 0b100, 7}
	if !bytes.Equal(got, want) {
		t.Errorf("EncodeUpdate = % x, want % x", got, want)
	}
}

func TestDecodeCommandRefuses(t *testing.T) {
	create := EncodeCreate(CreateTopic{Name: "ab", ReplicationFactor: 1, Replicas: [][]string{{"x"}}})
	for name, b := range map[string][]byte{
		"empty":             nil,
		"unknown type":      {0x7f, 0},
		"type zero":         {0x00},
		"truncated":         create[:len(create)-1],
		"trailing":          append(append([]byte{}, create...), 0),
		"overlong varint":   {0x03, 0x82, 0x00, 'a', 'b'},
		"string past end":   {0x03, 5, 'a'},
		"huge count":        {0x01, 1, 'a', 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"unknown flag":      {0x02, 1, 'a', 0b1000},
		"record bytes >u32": {0x02, 1, 'a', 0b100, 0x80, 0x80, 0x80, 0x80, 0x10},
		"varint > 10 bytes": {0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		if c, err := DecodeCommand(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: DecodeCommand(% x) = %#v, %v; want ErrInvalid", name, b, c, err)
		}
	}
}

// FuzzDecodeCommand: a command either is refused with ErrInvalid or
// encodes back to exactly its bytes (one encoding per command).
func FuzzDecodeCommand(f *testing.F) {
	for _, b := range sampleCommands() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if again := encodeCommand(b[0], c); !bytes.Equal(again, b) {
			t.Fatalf("decoded %#v encodes to % x, not % x", c, again, b)
		}
	})
}
