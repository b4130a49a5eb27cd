package wire

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

var errBad = errors.New("bad test encoding")

func TestRoundTrip(t *testing.T) {
	var b []byte
	b = append(b, 7)
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(1.5))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(-2.25))
	b = binary.AppendUvarint(b, 300)
	b = binary.AppendVarint(b, -300)
	b = AppendStr(b, "ups.status")
	b = AppendStr(b, "")
	d := NewDecoder(b, errBad)
	if got := d.Byte(); got != 7 {
		t.Errorf("Byte = %d", got)
	}
	if got := math.Float32frombits(d.U32()); got != 1.5 {
		t.Errorf("U32 = %v", got)
	}
	if got := math.Float64frombits(d.U64()); got != -2.25 {
		t.Errorf("U64 = %v", got)
	}
	if got := d.Uvarint(); got != 300 {
		t.Errorf("Uvarint = %d", got)
	}
	if got := d.Varint(); got != -300 {
		t.Errorf("Varint = %d", got)
	}
	if got := d.Str(); got != "ups.status" {
		t.Errorf("Str = %q", got)
	}
	if got := d.Str(); got != "" {
		t.Errorf("Str = %q", got)
	}
	if d.Err() != nil || d.Len() != 0 {
		t.Fatalf("Err = %v, %d bytes left", d.Err(), d.Len())
	}
}

// Every read past the end fails with the format's sentinel, the first
// error stays, and the reads after it return zero values.
func TestTruncated(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []byte
		read func(d *Decoder) any
		want string
	}{
		{"byte", nil, func(d *Decoder) any { return d.Byte() }, "truncated byte"},
		{"uint32", []byte{1, 2, 3}, func(d *Decoder) any { return d.U32() }, "truncated uint32"},
		{"uint64", []byte{1, 2, 3, 4, 5, 6, 7}, func(d *Decoder) any { return d.U64() }, "truncated uint64"},
		{"uvarint", []byte{0x80}, func(d *Decoder) any { return d.Uvarint() }, "truncated uvarint"},
		{"varint", []byte{0xff, 0xff}, func(d *Decoder) any { return d.Varint() }, "truncated varint"},
		{"string", []byte{5, 'a', 'b'}, func(d *Decoder) any { return d.Str() }, "truncated string"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(tt.in, errBad)
			got := tt.read(d)
			if !errors.Is(d.Err(), errBad) || d.Err().Error() != "bad test encoding: "+tt.want {
				t.Fatalf("Err = %v, want %q", d.Err(), tt.want)
			}
			if got != tt.read(NewDecoder(nil, errBad)) || d.Len() != 0 {
				t.Fatalf("read %v, %d bytes left; want the zero value and none", got, d.Len())
			}
			first := d.Err()
			d.Failf("later")
			if d.Byte() != 0 || d.Err() != first {
				t.Fatalf("after the first error: Err = %v", d.Err())
			}
		})
	}
}

// FuzzDecoder reads any input as a program of reads: never a panic, never
// more bytes consumed than given, and an error exactly when a read ran out.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5}, []byte{1, 0x80, 0x01, 3, 'a', 'b', 'c', 9})
	f.Add([]byte{2, 3}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	f.Fuzz(func(t *testing.T, ops, in []byte) {
		d := NewDecoder(in, errBad)
		for _, op := range ops {
			before := d.Len()
			switch op % 6 {
			case 0:
				d.Byte()
			case 1:
				d.Uvarint()
			case 2:
				d.Varint()
			case 3:
				d.Str()
			case 4:
				d.U32()
			case 5:
				d.U64()
			}
			if d.Len() > before {
				t.Fatalf("op %d grew the input from %d to %d bytes", op%6, before, d.Len())
			}
			if d.Err() != nil && (d.Len() != 0 || !errors.Is(d.Err(), errBad)) {
				t.Fatalf("after an error: %d bytes left, Err = %v", d.Len(), d.Err())
			}
		}
	})
}
