// Package wire holds the primitives of the project's compact binary
// encodings (the bus's reading batches in package ups, the rule engine's
// unit states in package rules): varints, fixed-width little-endian
// numbers and length-prefixed strings. It imports nothing of ours, so the
// core types may use it.
//
// A Decoder is written as straight-line code: a read past the end (or of a
// malformed varint) records the first error, empties the input and returns
// a zero value, and the caller checks Err once at the end.
package wire

import (
	"encoding/binary"
	"fmt"
)

// AppendStr appends s with its length as a uvarint.
func AppendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Decoder reads an encoding from the front of a byte slice.
type Decoder struct {
	b   []byte
	bad error // wrapped by every error of this decoder
	err error
}

// NewDecoder decodes b; its errors wrap bad (the format's sentinel, as
// ups.ErrBadBatch).
func NewDecoder(b []byte, bad error) *Decoder { return &Decoder{b: b, bad: bad} }

// Err is the first error met, or nil.
func (d *Decoder) Err() error { return d.err }

// Len is the number of bytes not read yet.
func (d *Decoder) Len() int { return len(d.b) }

// Failf records an error (the first one wins) and empties the input.
func (d *Decoder) Failf(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", d.bad, fmt.Sprintf(format, args...))
	}
	d.b = nil
}

func (d *Decoder) truncated(what string) { d.Failf("truncated %s", what) }

// take returns the next n bytes, or nil (and the error) when fewer are
// left.
func (d *Decoder) take(n int, what string) []byte {
	if len(d.b) < n {
		d.truncated(what)
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if b := d.take(1, "byte"); b != nil {
		return b[0]
	}
	return 0
}

// U32 reads a little-endian uint32.
func (d *Decoder) U32() uint32 {
	if b := d.take(4, "uint32"); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// U64 reads a little-endian uint64.
func (d *Decoder) U64() uint64 {
	if b := d.take(8, "uint64"); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.truncated("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Varint reads a signed (zig-zag) varint.
func (d *Decoder) Varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.truncated("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Str reads a string written by AppendStr.
func (d *Decoder) Str() string {
	return string(d.StrBytes())
}

// StrBytes reads a string written by AppendStr without copying it: the
// result aliases the input, for a caller that interns or parses it.
func (d *Decoder) StrBytes() []byte {
	n := d.Uvarint()
	if n > uint64(len(d.b)) {
		d.truncated("string")
		return nil
	}
	return d.take(int(n), "string")
}
