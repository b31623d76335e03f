package protocodec_test

import (
	"bytes"
	"fmt"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/internal/protocodec"
)

// TestConsumeStreamResponseRecords: the records of a response, decoded
// from slabs, are protobuf-go's, each its own message, with nil headers and
// time where the record has none; a batch allocates per response, not per
// record.
func TestConsumeStreamResponseRecords(t *testing.T) {
	record := func(b []byte) []byte { // b as one element of records
		return protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), b)
	}
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	twoTimes := marshal(&logv1.Record{Value: []byte("v"), Time: &timestamppb.Timestamp{Seconds: 5}})
	twoTimes = protowire.AppendBytes(protowire.AppendTag(twoTimes, 5, protowire.BytesType),
		marshal(&timestamppb.Timestamp{Nanos: 7})) // merged: 5 s and 7 ns
	unknown := protowire.AppendVarint(protowire.AppendTag(marshal(keyedRecord(3)), 99, protowire.VarintType), 1)
	manyHeaders := &logv1.Record{Value: []byte("h")}
	for i := range 200 {
		manyHeaders.Headers = append(manyHeaders.Headers, &logv1.Header{Key: string(rune('a' + i%26)), Value: bytes.Repeat([]byte{'x'}, i)})
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"keyed", marshal(&logv1.ConsumeStreamResponse{Records: []*logv1.Record{keyedRecord(1), keyedRecord(2)}})},
		{"plain and keyed", marshal(&logv1.ConsumeStreamResponse{Records: []*logv1.Record{
			{Value: []byte("plain"), Offset: 1}, keyedRecord(2), {Offset: 3, Key: []byte("k")},
			{Offset: 4, Time: &timestamppb.Timestamp{}}, {Offset: 5}}})},
		{"one record field", marshal(&logv1.ConsumeStreamResponse{Record: keyedRecord(1)})},
		{"both fields", marshal(&logv1.ConsumeStreamResponse{Record: keyedRecord(1), Records: []*logv1.Record{keyedRecord(2)}})},
		{"time twice", record(twoTimes)},
		{"unknown field in a record", append(record(unknown), record(marshal(keyedRecord(4)))...)},
		{"many headers", append(record(marshal(manyHeaders)), record(marshal(keyedRecord(5)))...)},
		{"empty records", append(record(nil), record(nil)...)},
		{"truncated", marshal(&logv1.ConsumeStreamResponse{Records: []*logv1.Record{keyedRecord(1)}})[:40]},
		{"empty", nil},
	}
	for _, tt := range tests {
		for _, codec := range []protocodec.Codec{{}, {Alias: true}} {
			want := &logv1.ConsumeStreamResponse{}
			wantErr := proto.Unmarshal(tt.data, want)
			got := &logv1.ConsumeStreamResponse{}
			err := codec.Unmarshal(bytes.Clone(tt.data), got)
			if (err == nil) != (wantErr == nil) {
				t.Fatalf("%s, alias %v: error %v, protobuf-go's %v", tt.name, codec.Alias, err, wantErr)
			}
			if err != nil {
				continue
			}
			if !proto.Equal(got, want) {
				t.Fatalf("%s, alias %v: %v, protobuf-go: %v", tt.name, codec.Alias, got, want)
			}
			checkNils(t, fmt.Sprintf("%s, alias %v", tt.name, codec.Alias), got, want)
			// Each record is its own: a change to one shows in no other.
			for _, r := range got.Records {
				r.Offset = 1 << 40
				if len(r.Headers) > 0 {
					r.Headers[0].Key = "changed"
				}
				if r.Time != nil {
					r.Time.Seconds = -1
				}
			}
			for i, r := range got.Records {
				r.Offset = want.Records[i].Offset
				if len(r.Headers) > 0 {
					r.Headers[0].Key = want.Records[i].Headers[0].Key
				}
				if r.Time != nil {
					r.Time.Seconds = want.Records[i].Time.Seconds
				}
			}
			if !proto.Equal(got, want) {
				t.Fatalf("%s, alias %v: records share messages: %v", tt.name, codec.Alias, got)
			}
		}
	}

	// One Decoder through all the cases, forwards and back: what a decode
	// leaves in its reused memory never shows in the next.
	var d protocodec.Decoder
	for pass := range 2 {
		for k := range tests {
			tt := tests[k]
			if pass == 1 {
				tt = tests[len(tests)-1-k]
			}
			want := &logv1.ConsumeStreamResponse{}
			wantErr := proto.Unmarshal(tt.data, want)
			got, err := d.Decode(bytes.Clone(tt.data))
			if (err == nil) != (wantErr == nil) {
				t.Fatalf("Decoder, %s: error %v, protobuf-go's %v", tt.name, err, wantErr)
			}
			if err == nil && !proto.Equal(got, want) {
				t.Fatalf("Decoder, %s: %v, protobuf-go: %v", tt.name, got, want)
			}
			checkNils(t, "Decoder, "+tt.name, got, want)
		}
	}

	// 100 keyed records: the slabs, the copy of the data, the shapes, not
	// five objects a record.
	batch := &logv1.ConsumeStreamResponse{}
	for i := range 100 {
		batch.Records = append(batch.Records, keyedRecord(uint64(i)))
	}
	data := marshal(batch)
	codec := protocodec.Codec{Alias: true}
	allocs := testing.AllocsPerRun(20, func() {
		if err := codec.Unmarshal(data, &logv1.ConsumeStreamResponse{}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 10 {
		t.Fatalf("decoding 100 keyed records took %v allocations, want at most 10", allocs)
	}

	// A Decoder decoding like responses again allocates nothing.
	if allocs := testing.AllocsPerRun(20, func() {
		if _, err := d.Decode(data); err != nil {
			t.Fatal(err)
		}
	}); allocs > 0 {
		t.Fatalf("a Decoder decoding 100 keyed records again took %v allocations, want none", allocs)
	}
}

// checkNils checks that got's records have headers and a time where
// protobuf-go's (want) have them, and nil ones where they do not.
func checkNils(t *testing.T, what string, got, want *logv1.ConsumeStreamResponse) {
	t.Helper()
	for i, r := range got.GetRecords() {
		w := want.Records[i]
		if (r.Headers == nil) != (w.Headers == nil) || (r.Time == nil) != (w.Time == nil) {
			t.Fatalf("%s: record %d has headers %v and time %v, protobuf-go's %v and %v", what, i, r.Headers, r.Time, w.Headers, w.Time)
		}
	}
}
