package battery

import (
	"fmt"
	"math"
	"time"

	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// RuleReplaced marks a battery change: an info event (firing, then a
// silent resolved at the same instant) so it reaches the timeline and,
// if the owner wants info notices, their phone.
const RuleReplaced = "battery_replaced"

// Swap detection: besides a later battery date, two of these signals
// within SwapWindow mean a new battery.
type signal uint8

const (
	sigRBCleared  signal = iota // the replace-battery flag cleared
	sigTestFixed                // a failed self-test, then a pass within SwapWindow
	sigRuntimeUp                // normalised runtime up 25 % or more at a similar load
	sigPowerCycle               // a gap in readings, then charging from below 90 %
	numSignals
)

var signalNames = [numSignals]string{"rb_cleared", "test_passed_after_failure", "runtime_jump", "power_cycle_recharge"}

// Reasons of a swap besides the signals (bits of swapRec.Why).
const (
	whyBatteryDate = 1 << (numSignals + iota)
	whyOwner
)

func whyString(why uint8) string {
	s := ""
	add := func(n string) {
		if s != "" {
			s += "+"
		}
		s += n
	}
	for i, n := range signalNames {
		if why&(1<<i) != 0 {
			add(n)
		}
	}
	if why&whyBatteryDate != 0 {
		add("battery_date")
	}
	if why&whyOwner != 0 {
		add("owner")
	}
	return s
}

const (
	SwapWindow     = 14 * day
	jumpRatio      = 1.25
	jumpSimilarL   = 0.15 // |ln(L1/L2)|: loads within about 15 %
	powerCycleGap  = 10 * time.Minute
	rechargeBelow  = 90.0
	swapHistory    = 4
	swapMinSignals = 2
)

// Swap is a recorded battery change.
type Swap struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// signal records one swap signal at at and reports a swap when two
// different ones fall within SwapWindow.
func (u *Unit) signal(s signal, r *ups.Reading, evs []rules.Event) []rules.Event {
	at := r.Time.Unix()
	u.Sig[s] = uint32(at)
	n, why := 0, uint8(0)
	for i, t := range u.Sig {
		if t != 0 && at-int64(t) <= int64(SwapWindow/time.Second) {
			n++
			why |= 1 << i
		}
	}
	if n < swapMinSignals {
		return evs
	}
	u.SwapDate = at
	u.reinstall(at)
	return u.replaced(r, why, evs)
}

// replaced records a battery change and starts its life afresh.
func (u *Unit) replaced(r *ups.Reading, why uint8, evs []rules.Event) []rules.Event {
	at := r.Time.Unix()
	u.Sig = [numSignals]uint32{}
	if u.H.Since != at {
		u.resetHealth(at)
	}
	u.ExtraAge = 0
	if int(u.SwapN) >= swapHistory {
		copy(u.Swaps[:], u.Swaps[1:])
		u.SwapN--
	}
	u.Swaps[u.SwapN] = swapRec{uint32(at), why}
	u.SwapN++
	ev := rules.Event{
		Kind: rules.Firing, Rule: RuleReplaced, Severity: rules.Info, Serial: r.Serial,
		At: r.Time, StartedAt: r.Time, Status: r.Status.Raw,
		Fingerprint: fmt.Sprintf("%s/%s/%d", r.Serial, RuleReplaced, r.Time.UnixMilli()),
		Message:     "battery replaced (" + whyString(why) + ")",
	}
	res := ev
	res.Kind, res.EndedAt, res.Silent = rules.Resolved, r.Time, true
	return append(evs, ev, res)
}

type swapRec struct {
	At  uint32
	Why uint8
}

// SwapList returns the recorded swaps, oldest first.
func (u *Unit) SwapList() []Swap {
	out := make([]Swap, 0, u.SwapN)
	for _, s := range u.Swaps[:u.SwapN] {
		out = append(out, Swap{time.Unix(int64(s.At), 0).UTC(), whyString(s.Why)})
	}
	return out
}

// swapSignals looks at one reading for the signals it can carry.
func (u *Unit) swapSignals(r *ups.Reading, at int64, evs []rules.Event) []rules.Event {
	if !r.HasStatus {
		return evs
	}
	rb := r.Status.Has(ups.RB)
	if u.RB && !rb {
		evs = u.signal(sigRBCleared, r, evs)
	}
	u.RB = rb
	if u.LastAt != 0 && time.Duration(at-u.LastAt)*time.Second >= powerCycleGap && r.Status.Has(ups.CHRG) {
		if c, ok := r.Num(ups.BatteryCharge); ok && c < rechargeBelow {
			evs = u.signal(sigPowerCycle, r, evs)
		}
	}
	return evs
}

// runtimeJump compares a closed hour with the latest day at a similar
// load.
func (u *Unit) runtimeJump(p point) bool {
	h := &u.H
	k, _ := u.K()
	for i := int(h.RN) - 1; i >= 0; i-- {
		q := h.Recent[i]
		if math.Abs(float64(p.L-q.L)) <= jumpSimilarL {
			return p.norm(k)-q.norm(k) >= math.Log(jumpRatio)
		}
	}
	return false
}
