package rules

// The state machine every stateful rule goes through: inactive (no
// entry) -> pending -> firing -> resolved, with keep_firing_for,
// reminders, and the events each move emits.

import (
	"fmt"
	"strconv"
	"time"
)

// timers fires what is due at event time te.
func (u *unitEval) timers(te int64) {
	st := u.st
	for i := 0; i < len(st.alerts); {
		a := &st.alerts[i]
		n := len(st.alerts)
		u.timer(a, te)
		if len(st.alerts) == n {
			i++
		}
	}
	if a := st.find(rPowerUnstable); a != nil && st.bits&bitRawOB == 0 {
		if end := st.flapLast + ms(u.p.PowerUnstable.Quiet); te >= end {
			u.resolve(a, st.flapLast, end)
		}
	}
}

func (u *unitEval) timer(a *alertState, te int64) {
	c := u.common(a.rule)
	if a.phase == pending {
		if due := a.started + u.forOf(a.rule, c); te >= due {
			u.fire(a, due)
		}
		return
	}
	if a.clear != 0 {
		if due := a.clear + ms(c.KeepFiringFor); te >= due {
			u.resolve(a, a.clear, due)
			return
		}
	}
	u.catchUp(a, te)
	if rep := ms(c.RepeatEvery); rep > 0 && a.flags&flagAnnounced != 0 && te-a.note >= rep {
		at := a.note + (te-a.note)/rep*rep
		u.emit(Reminder, a, at, at < u.histCut)
		a.note = at
	}
}

// common returns the timing of a rule.
func (u *unitEval) common(id ruleID) Common { return u.p.timing[id] }

// forOf is the pending period; on_battery waits longer while the power is
// unstable, so blips stop paging but a real outage still does.
func (u *unitEval) forOf(id ruleID, c Common) int64 {
	f := ms(c.For)
	if id == rOnBattery && u.st.find(rPowerUnstable) != nil {
		f = max(f, ms(u.p.PowerUnstable.OnBatteryFor))
	}
	return f
}

// step moves one rule's state machine on a condition observed at t.
func (u *unitEval) step(id ruleID, cn cond, t int64) {
	st, c := u.st, u.common(id)
	a := st.find(id)
	if !c.Enabled {
		if a != nil && a.phase == pending {
			st.remove(id)
		} else if a != nil {
			// Disabled while firing (configuration changed): close it.
			u.resolve(a, t, t)
		}
		return
	}
	switch cn.kind {
	case cFire:
		if a == nil {
			a = st.add(alertState{rule: id, phase: pending, sev: cn.sev, started: t})
		}
		a.vals = cn.vals
		if a.phase == pending {
			a.sev = cn.sev
			if t-a.started >= u.forOf(id, c) {
				u.fire(a, t)
			}
			return
		}
		a.clear = 0
		u.catchUp(a, t)
		if cn.sev != a.sev {
			a.sev = cn.sev
			if a.flags&flagAnnounced != 0 {
				u.emit(Updated, a, t, t < u.histCut)
				a.note = t
			}
		}
	case cQuiet, cClear:
		if a == nil {
			return
		}
		if a.phase == pending {
			st.remove(id)
			return
		}
		if cn.kind == cClear {
			if cn.vals[0].id != 0 {
				a.vals = cn.vals
			}
			if a.clear == 0 {
				a.clear = t
			}
			if t-a.clear >= ms(c.KeepFiringFor) {
				u.resolve(a, a.clear, t)
				return
			}
		}
		u.catchUp(a, t)
	}
	if rep := ms(c.RepeatEvery); rep > 0 && a.flags&flagAnnounced != 0 && t-a.note >= rep {
		u.emit(Reminder, a, t, t < u.histCut)
		a.note = t
	}
}

// fire moves a to firing at time at. An alert firing in a backlog older
// than historical_after is not announced yet (see flagAnnounced).
func (u *unitEval) fire(a *alertState, at int64) {
	a.phase = firing
	a.fired = at
	a.note = at
	a.clear = 0
	if at >= u.histCut {
		a.flags |= flagAnnounced
		u.emit(Firing, a, at, false)
	}
}

// catchUp announces an alert held back during a backlog once it is seen
// still firing in recent time.
func (u *unitEval) catchUp(a *alertState, t int64) {
	if a.flags&flagAnnounced == 0 && t >= u.histCut {
		a.flags |= flagAnnounced
		a.note = t
		u.emit(Firing, a, a.fired, false)
	}
}

// resolve ends a firing alert: the condition cleared at ended, the alert
// resolves at at. An alert never announced is emitted whole, Firing then
// Resolved, historical if it ended before historical_after.
func (u *unitEval) resolve(a *alertState, ended, at int64) {
	if a.flags&flagAnnounced == 0 {
		hist := ended < u.histCut
		u.emit(Firing, a, a.fired, hist)
		u.emitResolved(a, ended, at, hist)
	} else {
		u.emitResolved(a, ended, at, false)
	}
	if a.rule == rPowerUnstable {
		u.st.flapTotal = 0
	}
	u.st.remove(a.rule)
}

func (u *unitEval) emitResolved(a *alertState, ended, at int64, hist bool) {
	ev := u.event(Resolved, a, at, hist)
	ev.EndedAt = time.UnixMilli(ended).UTC()
	ev.Duration = time.Duration(ended-a.started) * time.Millisecond
	switch a.rule {
	case rOnBattery:
		ev.Message = "power restored after " + ev.Duration.String()
		ev.Silent = !u.p.PowerRestored.Enabled
	case rPowerUnstable:
		ev.Message = fmt.Sprintf("power stable again after %d interruptions", u.st.flapTotal)
		ev.Values = []Value{{valName(valInterruptions), float64(u.st.flapTotal)}}
	default:
		ev.Message = ruleDefs[a.rule].desc + " cleared after " + ev.Duration.String()
	}
	u.out = append(u.out, ev)
}

func (u *unitEval) emit(k EventKind, a *alertState, at int64, hist bool) {
	ev := u.event(k, a, at, hist)
	switch k {
	case Firing:
		ev.Message = ruleDefs[a.rule].desc
		if a.rule == rUPSAlarm && u.r != nil {
			if s, ok := u.r.Text("ups.alarm"); ok && s != "" {
				ev.Message += ": " + s
			}
		}
		if a.rule == rPowerUnstable {
			ev.Message = fmt.Sprintf("power unstable: %d interruptions within %s",
				u.st.flapTotal, u.p.PowerUnstable.Window)
		}
	case Updated:
		ev.Message = ruleDefs[a.rule].desc + ", now " + a.sev.String()
	case Reminder:
		ev.Message = ruleDefs[a.rule].desc + " since " + ev.StartedAt.Format(time.RFC3339)
	}
	u.out = append(u.out, ev)
}

func (u *unitEval) event(k EventKind, a *alertState, at int64, hist bool) Event {
	ev := Event{
		Kind:        k,
		Rule:        ruleDefs[a.rule].name,
		Severity:    a.sev,
		Serial:      u.st.serial,
		At:          time.UnixMilli(at).UTC(),
		StartedAt:   time.UnixMilli(a.started).UTC(),
		Fingerprint: string(u.st.serial) + "/" + ruleDefs[a.rule].name + "/" + strconv.FormatInt(a.started, 10),
		Historical:  hist,
	}
	if u.r != nil && u.r.HasStatus {
		ev.Status = u.r.Status.Raw
	} else if u.st.bits&bitHasStatus != 0 {
		ev.Status = u.st.status.String()
	}
	for _, v := range a.vals {
		if v.id != 0 {
			ev.Values = append(ev.Values, Value{valName(v.id), float64(v.x)})
		}
	}
	return ev
}
