package service

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/logstore"
)

// Limits on a record's metadata, besides Config.MaxRecordBytes, which its
// key, header keys and values and value count toward together.
const (
	MaxHeaderKeyBytes = 256
	// maxHeaders bounds one record's headers: each costs the log a decode
	// and an allocation however small it is.
	maxHeaders = 1024
)

// record checks a produced record and returns it as the log takes it; its
// slices alias the request. index names the record in a batch (-1 for a
// single record). A producer's time is ignored: the leader stamps records.
// The slices are clipped: the handlers' codec (protocodec, Alias) leaves
// their capacity running into the request's next fields.
// Headers are carved from *slab, shared by a batch's records. size is what
// the record counts against limit, the largest record its topic takes.
func record(index int, r *logv1.Record, slab *[]logstore.Header, limit int) (rec logstore.Record, size int, err error) {
	rec = logstore.Record{Key: slices.Clip(r.GetKey()), Value: slices.Clip(r.GetValue())}
	if hs := r.GetHeaders(); len(hs) > 0 {
		if len(hs) > maxHeaders {
			return rec, 0, invalidArgument("%s has %d headers, the limit is %d", recordName(index), len(hs), maxHeaders)
		}
		if cap(*slab)-len(*slab) < len(hs) {
			*slab = make([]logstore.Header, 0, max(len(hs), 2*cap(*slab), 16))
		}
		start := len(*slab)
		*slab = (*slab)[:start+len(hs)]
		rec.Headers = (*slab)[start : start+len(hs) : start+len(hs)]
		for i, h := range hs {
			k := h.GetKey()
			switch {
			case k == "":
				return rec, 0, invalidArgument("%s: header %d has an empty key", recordName(index), i)
			case len(k) > MaxHeaderKeyBytes:
				return rec, 0, invalidArgument("%s: header %d key of %d bytes exceeds the limit of %d bytes", recordName(index), i, len(k), MaxHeaderKeyBytes)
			case !utf8.ValidString(k):
				return rec, 0, invalidArgument("%s: header %d key is not valid UTF-8", recordName(index), i)
			}
			rec.Headers[i] = logstore.Header{Key: k, Value: slices.Clip(h.GetValue())}
		}
	}
	if size = rec.Size(); size > limit {
		return rec, 0, invalidArgument("%s of %d bytes (key, headers and value) exceeds the limit of %d bytes", recordName(index), size, limit)
	}
	return rec, size, nil
}

// recordName names a record in an error: "record" alone, or "record i" in
// a batch. Built only when there is an error: this runs for every record.
func recordName(index int) string {
	if index < 0 {
		return "record"
	}
	return "record " + strconv.Itoa(index)
}

// records checks a batch of records and returns them as the log takes them,
// with the bytes they count against the limits; limit is the largest
// record their topic takes.
func records(in []*logv1.Record, limit int) ([]logstore.Record, int, error) {
	return appendRecords(nil, new([]logstore.Header), in, limit)
}

// appendRecords is records into storage the caller reuses: the records
// are appended to dst[:0] and their headers carved from *slab.
func appendRecords(dst []logstore.Record, slab *[]logstore.Header, in []*logv1.Record, limit int) ([]logstore.Record, int, error) {
	if len(in) == 0 {
		return nil, 0, invalidArgument("empty batch: send at least one record")
	}
	if len(in) > maxBatchRecords {
		return nil, 0, invalidArgument("batch of %d records exceeds the limit of %d records", len(in), maxBatchRecords)
	}
	recs := slices.Grow(dst[:0], len(in))[:len(in)]
	size := 0
	for i, r := range in {
		rec, n, err := record(i, r, slab, limit)
		if err != nil {
			return nil, 0, err
		}
		recs[i] = rec
		size += n
	}
	return recs, size, nil
}

// toProto fills dst with rec; dst's Time and Headers are reused when there.
// dst's Headers past len(rec.Headers) keep theirs, unseen.
func toProto(rec *logstore.Record, dst *logv1.Record) {
	dst.Offset, dst.Value, dst.Key = rec.Offset, rec.Value, rec.Key
	if rec.Time.IsZero() {
		dst.Time = nil
	} else {
		if dst.Time == nil {
			dst.Time = new(timestamppb.Timestamp)
		}
		dst.Time.Seconds, dst.Time.Nanos = rec.Time.Unix(), int32(rec.Time.Nanosecond())
	}
	// A stream's records are reused batch after batch, and so are their
	// Headers: a keyed record costs no allocation per header.
	hs := dst.Headers[:0]
	for i, h := range rec.Headers {
		if i < cap(hs) && hs[:i+1][i] != nil {
			hs = hs[:i+1]
		} else {
			hs = append(hs, new(logv1.Header))
		}
		hs[i].Key, hs[i].Value = h.Key, h.Value
	}
	dst.Headers = hs
}

// fromTime checks a requested start time.
func fromTime(ts *timestamppb.Timestamp) (time.Time, error) {
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, invalidArgument("bad time: %v", err)
	}
	return ts.AsTime(), nil
}
