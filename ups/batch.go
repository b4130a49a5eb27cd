package ups

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/upswatch/upswatch/internal/wire"
)

// The batch encoding is how readings travel on the bus: many readings of
// one partition in one message, because a bus message per reading costs
// more CPU than the rest of the ingest together.
//
//	batch   = version:byte count:uvarint reading*
//	reading = serial:str time:varint(unix ms) presence:byte status:name?
//	          nmetrics:uvarint (name float64-bits:8 bytes LE)*
//	          ntexts:uvarint (name str)*
//	name    = uvarint k; k>0: dictionary[k-1]; k==0: str follows
//	str     = len:uvarint bytes
//
// The status is written as a str preceded by a byte 1, or a byte 0 when
// the reading had no ups.status. Names found in the dictionary cost one
// byte and no allocation when decoded. The dictionary is append-only:
// entries may be added at its end, never changed or removed, since
// batches already stored in a stream refer to them by position.
const batchVersion = 1

var dictionary = []string{
	// Known numeric variables, in the order of the Var constants at the
	// time the format was fixed.
	"battery.charge", "battery.charge.low", "battery.charge.warning",
	"battery.runtime", "battery.runtime.low", "battery.voltage",
	"battery.voltage.nominal", "battery.temperature", "battery.packs.bad",
	"input.voltage", "input.voltage.nominal", "input.transfer.low",
	"input.transfer.high", "input.frequency", "input.frequency.nominal",
	"output.voltage", "output.frequency", "ups.load", "ups.temperature",
	"ups.realpower", "ups.power", "ambient.temperature",
	// Frequent others.
	"ups.alarm", "ups.test.result", "ups.model", "ups.mfr", "ups.serial",
	"device.model", "device.mfr", "device.serial", "device.type",
	"output.current", "input.current", "output.voltage.nominal",
	"ups.realpower.nominal", "ups.power.nominal", "battery.type",
	"ups.beeper.status", "ups.firmware", "ups.delay.shutdown",
	"ups.delay.start", "ups.timer.shutdown", "ups.timer.start",
	"driver.name", "driver.version", "battery.voltage.low",
	"battery.voltage.high", "ups.type", "input.voltage.fault",
}

var dictIndex = func() map[string]uint64 {
	m := make(map[string]uint64, len(dictionary))
	for i, s := range dictionary {
		m[s] = uint64(i + 1)
	}
	return m
}()

// ErrBadBatch is returned (wrapped) for a batch that cannot be decoded.
var ErrBadBatch = errors.New("malformed reading batch")

// AppendBatch appends the encoding of rs to dst.
func AppendBatch(dst []byte, rs []Reading) []byte {
	dst = append(dst, batchVersion)
	dst = binary.AppendUvarint(dst, uint64(len(rs)))
	for i := range rs {
		dst = appendReading(dst, &rs[i])
	}
	return dst
}

func appendReading(dst []byte, r *Reading) []byte {
	dst = wire.AppendStr(dst, string(r.Serial))
	dst = binary.AppendVarint(dst, r.Time.UnixMilli())
	dst = append(dst, byte(r.Presence))
	if r.HasStatus {
		dst = append(dst, 1)
		dst = wire.AppendStr(dst, r.Status.Raw)
	} else {
		dst = append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Metrics)))
	for _, m := range r.Metrics {
		dst = appendName(dst, m.Name)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(m.Value))
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Texts)))
	for _, t := range r.Texts {
		dst = appendName(dst, t.Name)
		dst = wire.AppendStr(dst, t.Value)
	}
	return dst
}

func appendName(dst []byte, s string) []byte {
	if k, ok := dictIndex[s]; ok {
		return binary.AppendUvarint(dst, k)
	}
	dst = append(dst, 0)
	return wire.AppendStr(dst, s)
}

// DecodeBatch decodes a batch made by AppendBatch, appending to rs. Its
// readings own their memory; a consumer that decodes batch after batch
// uses a BatchDecoder instead.
func DecodeBatch(b []byte, rs []Reading) ([]Reading, error) {
	var bd BatchDecoder // no intern tables: nothing kept
	return bd.Append(rs, b)
}
