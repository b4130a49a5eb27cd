package rules

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/upswatch/upswatch/internal/wire"
	"github.com/upswatch/upswatch/ups"
)

// ruleID numbers the stateful rules; ruleDefs (table.go) holds each
// rule's definition under its number. The numbers are persisted in
// UnitState: append new rules at the end, never renumber.
type ruleID uint8

const (
	rOnBattery ruleID = iota
	rPowerUnstable
	rLowBattery
	rBatteryWarning
	rReplaceBattery
	rOverload
	rInputVoltage
	rInputFrequency
	rBypass
	rUPSOff
	rFSD
	rUPSAlarm
	rTemperature
	rSelfTestFailed
	rCommLost
	numRules
)

type phase uint8

const (
	pending phase = iota + 1
	firing
)

// Alert state flags.
const (
	// announced: the Firing event was emitted. An alert that fires
	// while its readings are older than historical_after is held back
	// until it either resolves (then both events are Historical) or is
	// seen alive in recent time (then it is announced).
	flagAnnounced uint8 = 1 << iota
)

// val is a compact triggering value: id 1+ups.Var, or one of the
// pseudo-variables below; 0 = none.
type val struct {
	id uint8
	x  float32
}

const (
	valLoadMean      uint8 = 200 + iota // ups.load mean over the overload window
	valInterruptions                    // power interruptions counted
	valSilence                          // seconds without a reading
)

func valName(id uint8) string {
	switch id {
	case valLoadMean:
		return "ups.load.mean"
	case valInterruptions:
		return "power.interruptions"
	case valSilence:
		return "comm.silence"
	}
	if id >= 1 && int(id-1) < len(ups.Vars) {
		return ups.Vars[id-1].Name
	}
	return ""
}

// varVal is the value x of the variable v.
func varVal(v ups.Var, x float64) val { return val{uint8(v) + 1, float32(x)} }

// alertState is one (unit, rule) that is not inactive. Inactive rules
// have no entry, which keeps a quiet unit's state to a few dozen bytes.
type alertState struct {
	rule    ruleID
	phase   phase
	sev     Severity
	flags   uint8
	started int64 // ms: when the condition began (pending start)
	fired   int64 // ms: when it fired
	note    int64 // ms: last notice (firing, update, reminder)
	clear   int64 // ms: when the clear condition was first met while firing; 0 = not clearing
	vals    [2]val
}

// Device thresholds remembered from the unit's readings (a reading need
// not repeat them). 0 = not reported.
const (
	thChargeLow = iota
	thChargeWarning
	thRuntimeLow
	thVoltageNominal
	thTransferLow
	thTransferHigh
	thFrequencyNominal
	numThresholds
)

var thresholdVars = [numThresholds]ups.Var{
	ups.BatteryChargeLow, ups.BatteryChargeWarning, ups.BatteryRuntimeLow,
	ups.InputVoltageNominal, ups.InputTransferLow, ups.InputTransferHigh,
	ups.InputFrequencyNominal,
}

// Unit state bits.
const (
	bitOnBattery uint8 = 1 << iota // last telemetry said on battery (quirks applied, tests included)
	bitRawOB                       // on battery and not in a self-test: what flap detection counts
	bitHasStatus                   // a ups.status was seen
	bitOffline                     // the last presence said offline
)

const flapBuckets = 10

// UnitState is everything the engine keeps about one unit. The zero value
// is a unit never seen. Site is set by the caller (from the registry)
// and selects the site's overrides; it is persisted with the state.
//
// A UnitState is not safe for concurrent use: evaluate each unit from one
// goroutine at a time, in the order of its readings.
type UnitState struct {
	Site string

	serial        ups.Serial
	last          int64 // ms, event time of the last reading (telemetry or presence); 0 = never
	arrival       int64 // ms, the caller's now at that reading
	lastTelemetry int64 // ms, event time of the last telemetry reading
	interval      int64 // ms, learned reporting interval; 0 = not yet
	status        ups.Flag
	bits          uint8
	loadMean      float32
	loadAt        int64 // ms; 0 = no load seen
	thresholds    [numThresholds]float32

	flapHead  int64 // absolute index of the newest bucket
	flapCount [flapBuckets]uint8
	flapLast  int64  // ms, last on-line/on-battery transition
	flapTotal uint16 // interruptions during the current power_unstable episode

	alerts []alertState
}

// Serial returns the unit's serial as last seen.
func (st *UnitState) Serial() ups.Serial { return st.serial }

// Firing returns the names of the unit's firing alerts.
func (st *UnitState) Firing() []string {
	var out []string
	for i := range st.alerts {
		if st.alerts[i].phase == firing {
			out = append(out, st.alerts[i].rule.String())
		}
	}
	return out
}

func (st *UnitState) find(id ruleID) *alertState {
	for i := range st.alerts {
		if st.alerts[i].rule == id {
			return &st.alerts[i]
		}
	}
	return nil
}

func (st *UnitState) add(a alertState) *alertState {
	st.alerts = append(st.alerts, a)
	return &st.alerts[len(st.alerts)-1]
}

func (st *UnitState) remove(id ruleID) {
	for i := range st.alerts {
		if st.alerts[i].rule == id {
			st.alerts = append(st.alerts[:i], st.alerts[i+1:]...)
			return
		}
	}
}

// stateVersion is the first byte of MarshalBinary's output. Bump it when
// the layout changes and keep decoding the old ones.
const stateVersion = 1

// ErrBadState is returned (wrapped) by UnmarshalBinary for bytes it
// cannot decode.
var ErrBadState = errors.New("malformed unit state")

// MarshalBinary encodes the state compactly (a quiet unit takes about 60
// bytes) for a key-value store.
func (st *UnitState) MarshalBinary() ([]byte, error) {
	return st.AppendBinary(make([]byte, 0, 64+len(st.alerts)*32))
}

// AppendBinary appends the encoding of MarshalBinary to b.
func (st *UnitState) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, stateVersion)
	b = wire.AppendStr(b, st.Site)
	b = wire.AppendStr(b, string(st.serial))
	b = binary.AppendVarint(b, st.last)
	b = binary.AppendVarint(b, st.arrival-st.last)
	b = binary.AppendVarint(b, st.last-st.lastTelemetry)
	b = binary.AppendVarint(b, st.interval)
	b = binary.AppendUvarint(b, uint64(st.status))
	b = append(b, st.bits)
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(st.loadMean))
	b = binary.AppendVarint(b, st.loadAt)
	var mask uint8
	for i, th := range st.thresholds {
		if th != 0 {
			mask |= 1 << i
		}
	}
	b = append(b, mask)
	for _, th := range st.thresholds {
		if th != 0 {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(th))
		}
	}
	b = binary.AppendVarint(b, st.flapHead)
	b = append(b, st.flapCount[:]...)
	b = binary.AppendVarint(b, st.flapLast)
	b = binary.AppendUvarint(b, uint64(st.flapTotal))
	b = binary.AppendUvarint(b, uint64(len(st.alerts)))
	for i := range st.alerts {
		a := &st.alerts[i]
		b = append(b, byte(a.rule), byte(a.phase), byte(a.sev), a.flags)
		b = binary.AppendVarint(b, a.started)
		b = binary.AppendVarint(b, a.fired-a.started)
		b = binary.AppendVarint(b, a.note-a.started)
		b = binary.AppendVarint(b, a.clear)
		for _, v := range a.vals {
			b = append(b, v.id)
			if v.id != 0 {
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v.x))
			}
		}
	}
	return b, nil
}

// UnmarshalBinary replaces st with the decoded state.
func (st *UnitState) UnmarshalBinary(data []byte) error {
	d := wire.NewDecoder(data, ErrBadState)
	if v := d.Byte(); v != stateVersion {
		if d.Err() != nil {
			return d.Err()
		}
		return fmt.Errorf("%w: unknown version %d", ErrBadState, v)
	}
	var s UnitState
	s.Site = d.Str()
	s.serial = ups.Serial(d.Str())
	s.last = d.Varint()
	s.arrival = s.last + d.Varint()
	s.lastTelemetry = s.last - d.Varint()
	s.interval = d.Varint()
	s.status = ups.Flag(d.Uvarint())
	s.bits = d.Byte()
	s.loadMean = math.Float32frombits(d.U32())
	s.loadAt = d.Varint()
	mask := d.Byte()
	for i := range s.thresholds {
		if mask&(1<<i) != 0 {
			s.thresholds[i] = math.Float32frombits(d.U32())
		}
	}
	s.flapHead = d.Varint()
	for i := range s.flapCount {
		s.flapCount[i] = d.Byte()
	}
	s.flapLast = d.Varint()
	s.flapTotal = uint16(d.Uvarint())
	n := d.Uvarint()
	if n > uint64(numRules) {
		return fmt.Errorf("%w: %d alerts", ErrBadState, n)
	}
	if n > 0 {
		s.alerts = make([]alertState, n)
	}
	for i := range s.alerts {
		a := &s.alerts[i]
		a.rule, a.phase, a.sev, a.flags = ruleID(d.Byte()), phase(d.Byte()), Severity(d.Byte()), d.Byte()
		if d.Err() == nil && (a.rule >= numRules || a.phase < pending || a.phase > firing || a.sev > Critical) {
			return fmt.Errorf("%w: bad alert entry %d", ErrBadState, i)
		}
		a.started = d.Varint()
		a.fired = a.started + d.Varint()
		a.note = a.started + d.Varint()
		a.clear = d.Varint()
		for j := range a.vals {
			a.vals[j].id = d.Byte()
			if a.vals[j].id != 0 {
				a.vals[j].x = math.Float32frombits(d.U32())
			}
		}
	}
	if d.Err() != nil {
		return d.Err()
	}
	if d.Len() != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadState, d.Len())
	}
	*st = s
	return nil
}

// AppendSignificant appends the encoding of the state without the fields
// every reading moves (the times of the last reading, the learned
// reporting interval and the load mean).
// Two states with equal significant encodings evaluate the next readings
// alike except for those fields, so a caller may persist such a change
// lazily (a checkpoint), and must persist any other change at once: alert
// states, pending timers, flap counters, the status. (A checkpoint that
// lags on the learned interval only shifts comm_lost's threshold a little
// after a restart, until the next readings correct it.)
func (st *UnitState) AppendSignificant(b []byte) ([]byte, error) {
	c := *st
	c.last, c.arrival, c.lastTelemetry, c.interval, c.loadMean, c.loadAt = 0, 0, 0, 0, 0, 0
	return c.AppendBinary(b)
}
