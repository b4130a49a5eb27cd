// Package rules is upswatch's rule engine core: the alert catalog, its
// configuration (configs/rules.yaml), and a pure evaluator that turns a
// unit's readings into alert events.
//
// # Use
//
//	cat, err := rules.LoadCatalog("configs/rules.yaml") // or DefaultCatalog()
//	e := rules.NewEvaluator(cat)
//	st := &rules.UnitState{Site: site} // or UnmarshalBinary of the stored state
//	events = e.Evaluate(st, &reading, time.Now(), events[:0])
//	events = e.Tick(st, time.Now(), events[:0]) // every few seconds, once caught up
//	blob, _ := st.MarshalBinary()               // persist after each change
//
// The core does no I/O, starts no goroutines and never reads the clock:
// the caller passes now. An Evaluator is immutable and safe for
// concurrent use; a UnitState belongs to one goroutine at a time and
// must see its unit's readings in order.
//
// # Semantics
//
// Each (unit, rule) is inactive, pending (its condition holds, `for` has
// not elapsed) or firing; only pending and firing rules take memory. A
// rule has a fire condition and a separate clear condition (hysteresis);
// between the two a firing alert stays and a pending one is dropped.
// keep_firing_for holds a firing alert after its clear condition is met;
// a change of severity of a firing alert is an Updated event of the same
// alert (same Fingerprint); repeat_every sends Reminders.
//
// Rules run on event time (the readings' timestamps). Deadlines that
// passed between two readings (a `for` elapsed, keep_firing_for expired,
// a reminder due) are applied at their own time when the next reading
// or Tick comes, so the events do not depend on how often Tick is
// called. now is used for two things only: to measure silence
// (comm_lost: no reading for factor x the learned reporting interval,
// measured on the caller's clock so a unit with a skewed clock is not
// declared lost), and to recognise a replayed backlog: an alert that
// fires on readings older than historical_after is held back; if it
// resolves while still that old, its Firing and Resolved events are
// emitted together, marked Historical (record, do not notify); if it is
// seen firing in recent readings it is announced then.
//
// on_battery's resolution is the "power restored" notice and carries the
// outage length in Duration. Flap detection counts on-line to on-battery
// transitions in a window (10 buckets, constant memory); reaching
// power_unstable.interruptions raises one power_unstable digest, during
// which on_battery waits power_unstable.on_battery_for instead of its own
// `for`. Self-tests and calibrations (CAL, TEST) neither page on_battery
// nor count as interruptions.
//
// Quirks of real units (see the #BAD notes of the NUT device library):
// OL+DISCHRG with input.voltage below on_battery.no_input_below is on
// battery (CyberPower UT); contradictory OL+OB is on line unless the
// input voltage says the mains is gone (HP SNMP cards); a reading
// without ups.status keeps the last status.
//
// Overrides: a site's rules are laid over the global ones and a unit's
// over its site's. The caller tells the evaluator a unit's site through
// UnitState.Site (persisted with the state).
package rules
