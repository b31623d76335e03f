package service

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/internal/protocodec"
)

// TestRecordsClipAliasedBytes: the handlers' codec leaves a request's
// bytes pointing into one copy of it; appending to a record records
// returned must not write over the fields after it.
func TestRecordsClipAliasedBytes(t *testing.T) {
	in := &logv1.ProduceStreamRequest{}
	for range 3 {
		in.Records = append(in.Records, &logv1.Record{Value: []byte("value"), Key: []byte("key"),
			Headers: []*logv1.Header{{Key: "h1", Value: []byte("v1")}, {Key: "h2", Value: []byte("v2")}}})
	}
	data, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	req := &logv1.ProduceStreamRequest{}
	if err := (protocodec.Codec{Alias: true}).Unmarshal(data, req); err != nil {
		t.Fatal(err)
	}
	recs, _, err := records(req.GetRecords(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte{'!'}, 64)
	for _, r := range recs {
		_ = append(r.Value, junk...)
		_ = append(r.Key, junk...)
		for _, h := range r.Headers {
			_ = append(h.Value, junk...)
		}
	}
	if !proto.Equal(req, in) {
		t.Errorf("request after appends to its records' bytes: %v, want %v", req, in)
	}
}
