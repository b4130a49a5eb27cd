package ups

import (
	"math"
	"time"
)

// Var identifies a NUT variable that upswatch knows and that rules look up
// directly. A Reading can carry any other numeric variable too; those are
// stored and shown but no rule reads them.
type Var uint8

// Known numeric NUT variables. The order is free (the bus encodes names,
// not Var numbers); append new ones before numVars.
const (
	BatteryCharge Var = iota
	BatteryChargeLow
	BatteryChargeWarning
	BatteryRuntime
	BatteryRuntimeLow
	BatteryVoltage
	BatteryVoltageNominal
	BatteryTemperature
	BatteryPacksBad
	InputVoltage
	InputVoltageNominal
	InputTransferLow
	InputTransferHigh
	InputFrequency
	InputFrequencyNominal
	OutputVoltage
	OutputFrequency
	UPSLoad
	UPSTemperature
	UPSRealpower
	UPSPower
	AmbientTemperature
	numVars
)

// VarInfo describes a known variable: its NUT name and the range of values
// a working unit can report. Values outside it are absurd (a broken sensor
// or a corrupt payload) and the reading is rejected.
type VarInfo struct {
	Name     string
	Min, Max float64
}

// Vars is indexed by Var.
var Vars = [numVars]VarInfo{
	BatteryCharge:         {"battery.charge", 0, 200},
	BatteryChargeLow:      {"battery.charge.low", 0, 100},
	BatteryChargeWarning:  {"battery.charge.warning", 0, 100},
	BatteryRuntime:        {"battery.runtime", 0, 1e7},
	BatteryRuntimeLow:     {"battery.runtime.low", 0, 1e6},
	BatteryVoltage:        {"battery.voltage", 0, 2000},
	BatteryVoltageNominal: {"battery.voltage.nominal", 0, 2000},
	BatteryTemperature:    {"battery.temperature", -60, 200},
	BatteryPacksBad:       {"battery.packs.bad", 0, 1000},
	InputVoltage:          {"input.voltage", 0, 1000},
	InputVoltageNominal:   {"input.voltage.nominal", 0, 1000},
	InputTransferLow:      {"input.transfer.low", 0, 1000},
	InputTransferHigh:     {"input.transfer.high", 0, 1000},
	InputFrequency:        {"input.frequency", 0, 1000},
	InputFrequencyNominal: {"input.frequency.nominal", 0, 1000},
	OutputVoltage:         {"output.voltage", 0, 1000},
	OutputFrequency:       {"output.frequency", 0, 1000},
	UPSLoad:               {"ups.load", 0, 1000},
	UPSTemperature:        {"ups.temperature", -60, 200},
	UPSRealpower:          {"ups.realpower", 0, 1e7},
	UPSPower:              {"ups.power", 0, 1e7},
	AmbientTemperature:    {"ambient.temperature", -60, 200},
}

// AbsurdLimit bounds any numeric variable upswatch does not know: beyond
// it a value is treated as corrupt.
const AbsurdLimit = 1e12

var varByName = func() map[string]Var {
	m := make(map[string]Var, numVars)
	for v := Var(0); v < numVars; v++ {
		m[Vars[v].Name] = v
	}
	return m
}()

// LookupVar returns the Var for a NUT variable name.
func LookupVar(name string) (Var, bool) {
	v, ok := varByName[name]
	return v, ok
}

func (v Var) String() string { return Vars[v].Name }

// Metric is one numeric variable of a reading.
type Metric struct {
	Name  string
	Value float64
}

// Text is one non-numeric variable of a reading (ups.alarm,
// ups.test.result, device.model...). ups.status is parsed into Status.
type Text struct {
	Name  string
	Value string
}

// Presence is a unit's link state as it reports it on ups/{serial}/status.
type Presence uint8

const (
	// PresenceNone marks an ordinary telemetry reading.
	PresenceNone Presence = iota
	// PresenceOnline: the device said "online".
	PresenceOnline
	// PresenceOffline: the device (or its MQTT last will) said "offline".
	PresenceOffline
)

func (p Presence) String() string {
	switch p {
	case PresenceOnline:
		return "online"
	case PresenceOffline:
		return "offline"
	}
	return ""
}

// Reading is what one unit reported at one instant, or, when Presence is
// set, a change of its link state (then it carries no variables).
//
// Numeric variables live in Metrics in the order they arrived; the known
// ones are also indexed so Num is a constant-time lookup for the rules.
type Reading struct {
	Serial    Serial
	Time      time.Time // event time: the device's ts, else time of receipt
	Presence  Presence
	Status    Status
	HasStatus bool // ups.status was present (an empty one counts)
	Metrics   []Metric
	Texts     []Text

	idx [numVars]uint8 // index+1 into Metrics; 0 = absent
}

// Num returns a known variable's value.
func (r *Reading) Num(v Var) (float64, bool) {
	i := r.idx[v]
	if i == 0 {
		return 0, false
	}
	return r.Metrics[i-1].Value, true
}

// NumOr returns a known variable's value, or def when absent.
func (r *Reading) NumOr(v Var, def float64) float64 {
	if x, ok := r.Num(v); ok {
		return x
	}
	return def
}

// SetNum sets a numeric variable, replacing an earlier value of the same
// name.
func (r *Reading) SetNum(name string, value float64) {
	if v, ok := varByName[name]; ok {
		if i := r.idx[v]; i != 0 {
			r.Metrics[i-1].Value = value
			return
		}
		r.Metrics = append(r.Metrics, Metric{name, value})
		if len(r.Metrics) <= math.MaxUint8 {
			r.idx[v] = uint8(len(r.Metrics))
		}
		return
	}
	for i := range r.Metrics {
		if r.Metrics[i].Name == name {
			r.Metrics[i].Value = value
			return
		}
	}
	r.Metrics = append(r.Metrics, Metric{name, value})
}

// Text returns a non-numeric variable's value.
func (r *Reading) Text(name string) (string, bool) {
	for _, t := range r.Texts {
		if t.Name == name {
			return t.Value, true
		}
	}
	return "", false
}

// SetText sets a non-numeric variable. "ups.status" is parsed into Status.
func (r *Reading) SetText(name, value string) {
	if name == "ups.status" {
		r.Status = ParseStatus(value)
		r.HasStatus = true
		return
	}
	for i := range r.Texts {
		if r.Texts[i].Name == name {
			r.Texts[i].Value = value
			return
		}
	}
	r.Texts = append(r.Texts, Text{name, value})
}

// Reset clears r for reuse, keeping its slices' capacity.
func (r *Reading) Reset() {
	*r = Reading{Metrics: r.Metrics[:0], Texts: r.Texts[:0]}
}

// Reindex rebuilds the index of known variables after Metrics was
// assigned directly.
func (r *Reading) Reindex() {
	r.idx = [numVars]uint8{}
	for i, m := range r.Metrics {
		if v, ok := varByName[m.Name]; ok && i < math.MaxUint8 {
			r.idx[v] = uint8(i + 1)
		}
	}
}
