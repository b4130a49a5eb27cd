package battery

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/upswatch/upswatch/internal/wire"
)

// The stored form of a Unit: a version byte, then every field in a fixed
// order, integers as varints, floats as their IEEE bits, arrays as a
// count and their used entries. A few hundred bytes at most; a unit
// seen for a day, well under a hundred.
const codecVersion = 1

// ErrBadState is returned (wrapped) for a stored state that cannot be
// decoded.
var ErrBadState = errors.New("malformed battery state")

type enc struct{ b []byte }

func (e *enc) i(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) u(v uint64)  { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) f(v float64) { e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(v)) }
func (e *enc) g(v float32) { e.b = binary.LittleEndian.AppendUint32(e.b, math.Float32bits(v)) }
func (e *enc) p(v point)   { e.g(v.R); e.g(v.L) }

// dec reads the stored form with internal/wire's decoder (shared with the
// bus batches and the rule state), in the short names enc writes with.
type dec struct{ *wire.Decoder }

func (d dec) i() int64   { return d.Varint() }
func (d dec) u() uint64  { return d.Uvarint() }
func (d dec) f() float64 { return math.Float64frombits(d.U64()) }
func (d dec) g() float32 { return math.Float32frombits(d.U32()) }
func (d dec) p() point   { return point{d.g(), d.g()} }

// n reads a count bounded by limit.
func (d dec) n(limit int) int {
	v := d.u()
	if v > uint64(limit) {
		d.Failf("count %d over %d", v, limit)
		return 0
	}
	return int(v)
}

// AppendBinary appends the stored form of u to b.
func (u *Unit) AppendBinary(b []byte) ([]byte, error) {
	e := enc{append(b, codecVersion)}
	e.i(u.FirstSeen)
	e.i(u.LastAt)
	e.i(u.Install)
	e.u(uint64(u.InstallSrc))
	e.i(u.OwnerDate)
	e.i(u.BatDate)
	e.i(u.MfrDate)
	e.i(u.Maint)
	e.f(u.ExtraAge)
	e.g(u.LastTemp)
	e.u(uint64(u.BatDateH))
	e.u(uint64(u.MfrDateH))
	e.u(uint64(u.MaintH))
	// self-tests
	t := &u.T
	e.u(uint64(t.N))
	for _, r := range t.Recs[:t.N] {
		e.u(uint64(r.At))
		e.u(uint64(r.R))
	}
	e.u(uint64(t.ResultH))
	e.i(int64(t.Interval))
	// health
	h := &u.H
	e.i(h.Since)
	e.u(uint64(h.N))
	if h.N > 0 {
		e.f(h.Sx)
		e.f(h.Sy)
		e.f(h.Sxx)
		e.f(h.Sxy)
	}
	e.i(h.Hour)
	e.u(uint64(h.HN))
	if h.HN > 0 {
		e.g(h.HR)
		e.g(h.HL)
	}
	e.i(int64(h.Day))
	e.u(uint64(h.TN))
	for i := range h.TN {
		e.p(h.Today[i])
		e.u(uint64(h.TW[i]))
	}
	e.u(uint64(h.BN))
	for _, p := range h.Base[:h.BN] {
		e.p(p)
	}
	e.u(uint64(h.RN))
	for _, p := range h.Recent[:h.RN] {
		e.p(p)
	}
	e.i(h.OBStart)
	if h.OBStart != 0 {
		e.i(h.OBLast)
		e.g(h.OBCharge)
		e.g(h.OBLastCh)
		e.g(h.OBLoad)
		e.u(uint64(h.OBN))
	}
	e.i(h.OutageAt)
	if h.OutageAt != 0 {
		e.p(h.Outage)
	}
	e.u(uint64(h.TrN))
	for _, p := range h.Trend[:h.TrN] {
		e.i(int64(p.Day))
		e.u(uint64(p.S))
	}
	// swaps
	rb := uint64(0)
	if u.RB {
		rb = 1
	}
	e.u(rb)
	for _, s := range u.Sig {
		e.u(uint64(s))
	}
	e.i(u.SwapDate)
	e.u(uint64(u.SwapN))
	for _, s := range u.Swaps[:u.SwapN] {
		e.u(uint64(s.At))
		e.u(uint64(s.Why))
	}
	for _, a := range u.Alerts {
		e.i(a.Since)
		e.u(uint64(a.Sev))
	}
	return e.b, nil
}

// MarshalBinary is AppendBinary to a new slice.
func (u *Unit) MarshalBinary() ([]byte, error) { return u.AppendBinary(make([]byte, 0, 128)) }

// UnmarshalBinary replaces u (but its Serial) with a stored state.
func (u *Unit) UnmarshalBinary(b []byte) error {
	if len(b) == 0 || b[0] != codecVersion {
		return fmt.Errorf("%w: unknown version", ErrBadState)
	}
	d := dec{wire.NewDecoder(b[1:], ErrBadState)}
	v := Unit{Serial: u.Serial}
	v.FirstSeen = d.i()
	v.LastAt = d.i()
	v.Install = d.i()
	v.InstallSrc = Source(d.n(int(numSources) - 1))
	v.OwnerDate = d.i()
	v.BatDate = d.i()
	v.MfrDate = d.i()
	v.Maint = d.i()
	v.ExtraAge = d.f()
	v.LastTemp = d.g()
	v.BatDateH = uint32(d.u())
	v.MfrDateH = uint32(d.u())
	v.MaintH = uint32(d.u())
	t := &v.T
	t.N = uint8(d.n(testHistory))
	for i := range t.N {
		t.Recs[i] = TestRec{At: uint32(d.u()), R: TestResult(d.n(int(numResults) - 1))}
	}
	t.ResultH = uint32(d.u())
	t.Interval = int32(d.i())
	h := &v.H
	h.Since = d.i()
	h.N = uint32(d.u())
	if h.N > 0 {
		h.Sx, h.Sy, h.Sxx, h.Sxy = d.f(), d.f(), d.f(), d.f()
	}
	h.Hour = d.i()
	h.HN = uint16(d.u())
	if h.HN > 0 {
		h.HR, h.HL = d.g(), d.g()
	}
	h.Day = int32(d.i())
	h.TN = uint8(d.n(daySlots))
	for i := range h.TN {
		h.Today[i] = d.p()
		h.TW[i] = uint8(d.u())
	}
	h.BN = uint8(d.n(baselineDays))
	for i := range h.BN {
		h.Base[i] = d.p()
	}
	h.RN = uint8(d.n(recentDays))
	for i := range h.RN {
		h.Recent[i] = d.p()
	}
	h.OBStart = d.i()
	if h.OBStart != 0 {
		h.OBLast = d.i()
		h.OBCharge, h.OBLastCh, h.OBLoad = d.g(), d.g(), d.g()
		h.OBN = uint16(d.u())
	}
	h.OutageAt = d.i()
	if h.OutageAt != 0 {
		h.Outage = d.p()
	}
	h.TrN = uint8(d.n(trendPoints))
	for i := range h.TrN {
		h.Trend[i] = trendPt{int32(d.i()), uint16(d.u())}
	}
	v.RB = d.u() != 0
	for i := range v.Sig {
		v.Sig[i] = uint32(d.u())
	}
	v.SwapDate = d.i()
	v.SwapN = uint8(d.n(swapHistory))
	for i := range v.SwapN {
		v.Swaps[i] = swapRec{uint32(d.u()), uint8(d.u())}
	}
	for i := range v.Alerts {
		v.Alerts[i] = alertState{d.i(), uint8(d.n(2))}
	}
	if err := d.Err(); err != nil {
		return err
	}
	if d.Len() != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadState, d.Len())
	}
	*u = v
	return nil
}
