package area

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// An area's state lists every unit in its condition, and a site of
// thousands that goes dark at once makes it megabytes of JSON: over the
// 1 MB a NATS server takes in one message by default. States over
// compressAbove are stored as a zstd frame of the same JSON (member
// entries repeat their keys and fingerprints: about a tenth of the size);
// smaller ones stay plain JSON, readable with `nats kv get`.
const compressAbove = 64 << 10

// maxStateBytes bounds a decompressed state, so a corrupt or hostile
// value cannot make the evaluator allocate without limit.
const maxStateBytes = 256 << 20

var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

var (
	stateEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	stateDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxStateBytes))
)

// encodeState is the stored form of st.
func encodeState(st *State) ([]byte, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	if len(b) <= compressAbove {
		return b, nil
	}
	return stateEncoder.EncodeAll(b, make([]byte, 0, len(b)/8)), nil
}

// decodeState reads a stored state, compressed or not.
func decodeState(b []byte) (*State, error) {
	if bytes.HasPrefix(b, zstdMagic) {
		var err error
		if b, err = stateDecoder.DecodeAll(b, nil); err != nil {
			return nil, fmt.Errorf("decompress: %w", err)
		}
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	st.fix()
	return &st, nil
}
