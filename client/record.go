package client

import (
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// MaxHeaderKeyBytes is the longest header key a server accepts, in bytes
// of UTF-8.
const MaxHeaderKeyBytes = 256

// ErrInvalidRecord is returned, before anything is sent, for a record the
// server would refuse for its form: nil, or with a header key that is
// empty, not UTF-8 or longer than MaxHeaderKeyBytes. (It sits here rather
// than beside the other sentinels in errors.go only while that file is
// being rewritten.)
var ErrInvalidRecord = errors.New("client: invalid record")

// ValidateRecord checks what the client can check of a record before
// sending it: its header keys. Its size is the server's to judge (key,
// headers and value all count toward its maximum record size); its offset
// and time are ignored on produce.
func ValidateRecord(r *logv1.Record) error {
	if r == nil {
		return fmt.Errorf("%w: nil record", ErrInvalidRecord)
	}
	for i, h := range r.GetHeaders() {
		k := h.GetKey()
		switch {
		case h == nil:
			return fmt.Errorf("%w: header %d is nil", ErrInvalidRecord, i)
		case k == "":
			return fmt.Errorf("%w: header %d has an empty key", ErrInvalidRecord, i)
		case !utf8.ValidString(k):
			return fmt.Errorf("%w: header key %q is not UTF-8", ErrInvalidRecord, k)
		case len(k) > MaxHeaderKeyBytes:
			return fmt.Errorf("%w: header key %.32q... is %d bytes, more than %d", ErrInvalidRecord, k, len(k), MaxHeaderKeyBytes)
		}
	}
	return nil
}

// validateRecords checks every record of one request.
func validateRecords(records []*logv1.Record) error {
	for i, r := range records {
		if err := ValidateRecord(r); err != nil {
			if len(records) > 1 {
				return fmt.Errorf("record %d: %w", i, err)
			}
			return err
		}
	}
	return nil
}

// valueRecords wraps values as records without key or headers.
func valueRecords(values [][]byte) []*logv1.Record {
	records := make([]*logv1.Record, len(values))
	for i, v := range values {
		records[i] = &logv1.Record{Value: v}
	}
	return records
}

// clipRecord clips r's byte slices, which the client's codec leaves
// pointing into one copy of the whole response, capacity and all: a
// caller's append must not run into the next field or record. r's fields
// keep that copy alive while any of them is.
func clipRecord(r *logv1.Record) *logv1.Record {
	if r == nil {
		return nil
	}
	r.Value, r.Key = slices.Clip(r.Value), slices.Clip(r.Key)
	for _, h := range r.Headers {
		if h != nil {
			h.Value = slices.Clip(h.Value)
		}
	}
	return r
}
