package main

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// timeLayout is how the CLI prints a record's time: RFC 3339 in UTC with
// all nine digits of nanoseconds, so that times line up and sort as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// printer writes records in one of consume's output formats.
type printer struct {
	w      *bufio.Writer
	format string
	meta   bool // text and hex: time, key and headers before the value
}

func newPrinter(format string, meta bool, w io.Writer) (*printer, error) {
	switch format {
	case "text", "json", "hex":
		return &printer{w: bufio.NewWriterSize(w, 64<<10), format: format, meta: meta}, nil
	}
	return nil, usagef("--format %q: want text, json or hex", format)
}

// jsonRecord is the json output format of one record. Every byte field is
// base64 (as in protobuf's JSON), with its text beside it when it is valid
// UTF-8. The fields that came after value are omitted when unset, so a
// record of a value alone prints as it did before records had more.
type jsonRecord struct {
	Offset  uint64       `json:"offset"`
	Value   string       `json:"value"`
	Text    *string      `json:"text,omitempty"`
	Key     string       `json:"key,omitempty"`
	KeyText *string      `json:"key_text,omitempty"`
	Headers []jsonHeader `json:"headers,omitempty"`
	Time    string       `json:"time,omitempty"`
}

type jsonHeader struct {
	Key   string  `json:"key"`
	Value string  `json:"value"`
	Text  *string `json:"text,omitempty"`
}

// textOf returns b as a string when it is valid UTF-8.
func textOf(b []byte) *string {
	if !utf8.Valid(b) {
		return nil
	}
	s := string(b)
	return &s
}

// recordTime formats a record's time, "" when it has none.
func recordTime(rec *logv1.Record) string {
	ts := rec.GetTime()
	if ts == nil || ts.CheckValid() != nil {
		return ""
	}
	return ts.AsTime().UTC().Format(timeLayout)
}

func (p *printer) print(rec *logv1.Record) error {
	switch p.format {
	case "text":
		if p.meta {
			p.w.WriteString(recordTime(rec))
			p.w.WriteByte('\t')
			p.w.Write(rec.GetKey())
			p.w.WriteByte('\t')
			for i, h := range rec.GetHeaders() {
				if i > 0 {
					p.w.WriteByte(',')
				}
				p.w.WriteString(h.GetKey())
				p.w.WriteByte('=')
				p.w.Write(h.GetValue())
			}
			p.w.WriteByte('\t')
		}
		p.w.Write(rec.GetValue())
		return p.w.WriteByte('\n')
	case "hex":
		p.w.WriteString(strconv.FormatUint(rec.GetOffset(), 10))
		p.w.WriteByte('\t')
		if p.meta {
			p.w.WriteString(recordTime(rec))
			p.w.WriteByte('\t')
			p.w.WriteString(hex.EncodeToString(rec.GetKey()))
			p.w.WriteByte('\t')
			for i, h := range rec.GetHeaders() {
				if i > 0 {
					p.w.WriteByte(',')
				}
				p.w.WriteString(hex.EncodeToString([]byte(h.GetKey())))
				p.w.WriteByte('=')
				p.w.WriteString(hex.EncodeToString(h.GetValue()))
			}
			p.w.WriteByte('\t')
		}
		p.w.WriteString(hex.EncodeToString(rec.GetValue()))
		return p.w.WriteByte('\n')
	default:
		jr := jsonRecord{
			Offset: rec.GetOffset(),
			Value:  base64.StdEncoding.EncodeToString(rec.GetValue()),
			Text:   textOf(rec.GetValue()),
			Time:   recordTime(rec),
		}
		if k := rec.GetKey(); len(k) > 0 {
			jr.Key, jr.KeyText = base64.StdEncoding.EncodeToString(k), textOf(k)
		}
		for _, h := range rec.GetHeaders() {
			jr.Headers = append(jr.Headers, jsonHeader{
				Key:   h.GetKey(),
				Value: base64.StdEncoding.EncodeToString(h.GetValue()),
				Text:  textOf(h.GetValue()),
			})
		}
		b, err := json.Marshal(jr)
		if err != nil {
			return err
		}
		p.w.Write(b)
		return p.w.WriteByte('\n')
	}
}

func (p *printer) flush() error {
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
