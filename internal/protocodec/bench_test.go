package protocodec_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/internal/protocodec"
)

// BenchmarkCodec: a consume response of 1000 keyed records (100 B value,
// 16 B key, two headers, a time) through protobuf-go and through the codec
// (copying bytes fields, and aliasing them as proglog's client does).
func BenchmarkCodec(b *testing.B) {
	resp := &logv1.ConsumeStreamResponse{}
	for i := range 1000 {
		resp.Records = append(resp.Records, keyedRecord(uint64(i)))
	}
	data, err := proto.Marshal(resp)
	if err != nil {
		b.Fatal(err)
	}
	var codec protocodec.Codec
	b.Run("unmarshal/protobuf-go", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := proto.Unmarshal(data, &logv1.ConsumeStreamResponse{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal/codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := codec.Unmarshal(data, &logv1.ConsumeStreamResponse{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal/codec-alias", func(b *testing.B) {
		b.ReportAllocs()
		codec := protocodec.Codec{Alias: true}
		for b.Loop() {
			if err := codec.Unmarshal(data, &logv1.ConsumeStreamResponse{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal/decoder", func(b *testing.B) {
		b.ReportAllocs()
		var d protocodec.Decoder
		for b.Loop() {
			if _, err := d.Decode(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The path Decode takes for what its fast path leaves.
	b.Run("unmarshal/decoder-slow", func(b *testing.B) {
		b.ReportAllocs()
		var d protocodec.Decoder
		for b.Loop() {
			if _, err := d.DecodeSlow(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	buf := make([]byte, 0, len(data))
	b.Run("marshal/protobuf-go", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := (proto.MarshalOptions{}).MarshalAppend(buf[:0], resp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("marshal/codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := codec.MarshalAppend(buf[:0], resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}
