package rules

// The flap digest: power_unstable counts on-line to on-battery
// transitions in a sliding window and raises one alert instead of a page
// per blip.

import "math"

// flap counts on-line to on-battery transitions and raises one
// power_unstable digest instead of a page per blip.
// Only transitions seen against a known previous status count: a unit's
// first reading on battery is not an interruption.
func (u *unitEval) flap(t int64, raw, hadStatus bool) {
	st, p := u.st, &u.p.PowerUnstable
	was := st.bits&bitRawOB != 0
	if raw {
		st.bits |= bitRawOB
	} else {
		st.bits &^= bitRawOB
	}
	if raw == was || !hadStatus {
		return
	}
	st.flapLast = t
	if !raw {
		return
	}
	bw := max(ms(p.Window)/flapBuckets, 1)
	idx := t / bw
	if gap := idx - st.flapHead; gap > 0 {
		if gap >= flapBuckets {
			st.flapCount = [flapBuckets]uint8{}
		} else {
			for i := int64(1); i <= gap; i++ {
				st.flapCount[(st.flapHead+i)%flapBuckets] = 0
			}
		}
		st.flapHead = idx
	}
	if idx > st.flapHead-flapBuckets {
		if c := &st.flapCount[idx%flapBuckets]; *c < math.MaxUint8 {
			*c++
		}
	}
	n := 0
	for _, c := range st.flapCount {
		n += int(c)
	}
	if a := st.find(rPowerUnstable); a != nil {
		if st.flapTotal < math.MaxUint16 {
			st.flapTotal++
		}
		return
	}
	if !p.Enabled || n < p.Interruptions {
		return
	}
	st.flapTotal = uint16(n)
	a := st.add(alertState{rule: rPowerUnstable, phase: pending, sev: p.Severity, started: t})
	a.vals[0] = val{valInterruptions, float32(n)}
	u.fire(a, t)
}
