package cluster

import (
	"testing"

	"github.com/proglog/proglog/logstore"
)

// BenchmarkDecodeEntry decodes an entry of 100 records of 100 B, as the FSM
// does for every command it applies.
func BenchmarkDecodeEntry(b *testing.B) {
	recs := make([]logstore.Record, 100)
	for i := range recs {
		recs[i].Value = make([]byte, 100)
	}
	e := encodeRecords(1, recs)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeEntry(e); err != nil {
			b.Fatal(err)
		}
	}
}
