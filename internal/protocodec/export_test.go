package protocodec

import logv1 "github.com/proglog/proglog/gen/log/v1"

// DecodeFast is Decode's fast path alone: ok is false where Decode would
// take the slow path.
func (d *Decoder) DecodeFast(data []byte) (m *logv1.ConsumeStreamResponse, ok bool) {
	return &d.resp, d.decodeFast(data)
}

// DecodeSlow is Decode by the slow path alone.
func (d *Decoder) DecodeSlow(data []byte) (*logv1.ConsumeStreamResponse, error) {
	return d.decodeSlow(data)
}
