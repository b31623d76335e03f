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

// record checks a produced record and returns it as the log takes it
// (logRecord, checkRecord). index names the record in a batch (-1 for a
// single record); size is what the record counts against limit, the
// largest record its topic takes.
func record(index int, r *logv1.Record, slab *[]logstore.Header, limit int) (rec logstore.Record, size int, err error) {
	rec = logRecord(r, slab)
	size, err = checkRecord(index, &rec, limit)
	return rec, size, err
}

// logRecord returns a produced record as the log takes it, unchecked; its
// slices alias the message. A producer's time is ignored: the leader stamps
// records. The slices are clipped: the handlers' codec (protocodec, Alias)
// leaves their capacity running into the request's next fields. Headers
// are carved from *slab, shared by a batch's records.
func logRecord(r *logv1.Record, slab *[]logstore.Header) logstore.Record {
	rec := logstore.Record{Key: slices.Clip(r.GetKey()), Value: slices.Clip(r.GetValue())}
	if hs := r.GetHeaders(); len(hs) > 0 {
		if cap(*slab)-len(*slab) < len(hs) {
			*slab = make([]logstore.Header, 0, max(len(hs), 2*cap(*slab), 16))
		}
		start := len(*slab)
		for _, h := range hs {
			*slab = append(*slab, logstore.Header{Key: h.GetKey(), Value: slices.Clip(h.GetValue())})
		}
		rec.Headers = (*slab)[start:len(*slab):len(*slab)]
	}
	return rec
}

// checkRecord checks a produced record against the limits and returns
// what it counts against limit; index names it as record does.
func checkRecord(index int, rec *logstore.Record, limit int) (int, error) {
	if len(rec.Headers) > maxHeaders {
		return 0, invalidArgument("%s has %d headers, the limit is %d", recordName(index), len(rec.Headers), maxHeaders)
	}
	for i, h := range rec.Headers {
		switch k := h.Key; {
		case k == "":
			return 0, invalidArgument("%s: header %d has an empty key", recordName(index), i)
		case len(k) > MaxHeaderKeyBytes:
			return 0, invalidArgument("%s: header %d key of %d bytes exceeds the limit of %d bytes", recordName(index), i, len(k), MaxHeaderKeyBytes)
		case !utf8.ValidString(k):
			return 0, invalidArgument("%s: header %d key is not valid UTF-8", recordName(index), i)
		}
	}
	size := rec.Size()
	if size > limit {
		return 0, invalidArgument("%s of %d bytes (key, headers and value) exceeds the limit of %d bytes", recordName(index), size, limit)
	}
	return size, nil
}

// checkCount checks the number of records in one request.
func checkCount(n int) error {
	if n > maxBatchRecords {
		return invalidArgument("batch of %d records exceeds the limit of %d records", n, maxBatchRecords)
	}
	return nil
}

// checkRecords checks a request's records (checkRecord; single names its
// one record "record") and returns what they count against the limits.
func checkRecords(recs []logstore.Record, single bool, limit int) (int, error) {
	if err := checkCount(len(recs)); err != nil {
		return 0, err
	}
	size := 0
	for i := range recs {
		index := i
		if single {
			index = -1
		}
		n, err := checkRecord(index, &recs[i], limit)
		if err != nil {
			return 0, err
		}
		size += n
	}
	return size, nil
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
	if len(in) == 0 {
		return nil, 0, invalidArgument("empty batch: send at least one record")
	}
	if err := checkCount(len(in)); err != nil { // before the records are made
		return nil, 0, err
	}
	recs := make([]logstore.Record, len(in))
	slab := new([]logstore.Header)
	for i, r := range in {
		recs[i] = logRecord(r, slab)
	}
	size, err := checkRecords(recs, false, limit)
	if err != nil {
		return nil, 0, err
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

// appendProto appends recs to dst as the messages a leader is forwarded
// (toProto), reusing the messages in dst's capacity.
func appendProto(dst []*logv1.Record, recs []logstore.Record) []*logv1.Record {
	for i := range recs {
		n := len(dst)
		if n < cap(dst) && dst[:n+1][n] != nil {
			dst = dst[:n+1]
		} else {
			dst = append(dst, new(logv1.Record))
		}
		toProto(&recs[i], dst[n])
	}
	return dst
}

// forgetRecords empties messages appendProto filled, keeping them and
// their headers for reuse: nothing of a request's bytes stays reachable.
func forgetRecords(msgs []*logv1.Record) {
	for _, m := range msgs {
		m.Key, m.Value = nil, nil
		for _, h := range m.Headers[:cap(m.Headers)] {
			if h != nil {
				h.Key, h.Value = "", nil
			}
		}
	}
}

// fromTime checks a requested start time.
func fromTime(ts *timestamppb.Timestamp) (time.Time, error) {
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, invalidArgument("bad time: %v", err)
	}
	return ts.AsTime(), nil
}
