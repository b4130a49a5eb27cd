package payload

import (
	"encoding/binary"
	"math/bits"
)

// strIndex finds a byte string in a fixed set of strings. It replaces a
// map[string]T on the hot path: Go's map hashes the whole key, while
// variable names are told apart by their length and their first and last
// eight bytes, which two loads and one multiply hash. Open addressing
// with linear probing; a full comparison settles every hit, so the hash
// only affects speed, never the answer.
type strIndex struct {
	keys  []string
	slots []int32 // position in keys + 1; 0 = empty
	shift uint    // 64 - log2(len(slots))
}

func newStrIndex(keys []string) *strIndex {
	size := 16
	for size < 4*len(keys) { // at most 1/4 full: short probes
		size *= 2
	}
	x := &strIndex{keys: keys, slots: make([]int32, size),
		shift: uint(64 - bits.TrailingZeros(uint(size)))}
	mask := uint64(size - 1)
	for id, k := range keys {
		i := hashKey([]byte(k)) >> x.shift
		for x.slots[i] != 0 {
			i = (i + 1) & mask
		}
		x.slots[i] = int32(id + 1)
	}
	return x
}

// lookup returns b's position in keys.
func (x *strIndex) lookup(b []byte) (int, bool) {
	mask := uint64(len(x.slots) - 1)
	for i := hashKey(b) >> x.shift; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return 0, false
		}
		if x.keys[s-1] == string(b) {
			return int(s - 1), true
		}
	}
}

func hashKey(b []byte) uint64 {
	var a, z uint64
	if n := len(b); n >= 8 {
		a = binary.LittleEndian.Uint64(b)
		z = binary.LittleEndian.Uint64(b[n-8:])
	} else {
		for i, c := range b {
			a |= uint64(c) << (8 * i)
		}
	}
	return (a ^ bits.RotateLeft64(z, 29) ^ uint64(len(b))<<56) * 0x9E3779B97F4A7C15
}
