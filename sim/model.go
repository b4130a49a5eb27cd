package sim

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/upswatch/upswatch/ups"
)

// Payload formats.
const (
	FormatJSON = "json" // a JSON object of NUT variables plus ts
	FormatUPSC = "upsc" // upsc output: "name: value" lines
)

// slot names a variable whose value the model computes per reading.
type slot uint8

const (
	slotStatus slot = iota + 1
	slotInputVoltage
	slotInputFrequency
	slotOutputVoltage
	slotOutputFrequency
	slotLoad
	slotCharge
	slotRuntime
	slotBatteryVoltage
	slotUPSTemperature
	slotBatteryTemperature
	slotScaled // a power or current that follows the load: base*load/baseLoad
)

// dynamic lists the variables the model drives and the number of decimals
// printed when the dump gives no example to copy.
var dynamic = map[string]struct {
	slot slot
	prec int
}{
	"ups.status":          {slotStatus, 0},
	"input.voltage":       {slotInputVoltage, 1},
	"input.frequency":     {slotInputFrequency, 1},
	"output.voltage":      {slotOutputVoltage, 1},
	"output.frequency":    {slotOutputFrequency, 1},
	"ups.load":            {slotLoad, 0},
	"battery.charge":      {slotCharge, 0},
	"battery.runtime":     {slotRuntime, 0},
	"battery.voltage":     {slotBatteryVoltage, 1},
	"ups.temperature":     {slotUPSTemperature, 1},
	"battery.temperature": {slotBatteryTemperature, 1},
	"ups.realpower":       {slotScaled, 0},
	"ups.power":           {slotScaled, 0},
	"output.current":      {slotScaled, 1},
	"output.realpower":    {slotScaled, 0},
	"output.power":        {slotScaled, 0},
}

// segment is a literal run of the payload followed by one computed value.
type segment struct {
	lit  []byte
	slot slot
	prec int
	base float64 // slotScaled: the dump's value at its base load
}

// template is a unit's payload with holes for the computed values, built
// once so that a reading costs only number formatting: the static
// variables of a dump (often most of it) are copied as one literal.
type template struct {
	json bool
	segs []segment
	tail []byte
}

type templateBuilder struct {
	t   template
	cur []byte
}

func newTemplateBuilder(json bool) *templateBuilder {
	return &templateBuilder{t: template{json: json}}
}

// static adds a variable whose value never changes. raw marks a value that
// is already a JSON number.
func (b *templateBuilder) static(name, value string, raw bool) {
	if b.t.json {
		b.cur = append(b.cur, ',')
		b.cur = appendJSONString(b.cur, name)
		b.cur = append(b.cur, ':')
		if raw {
			b.cur = append(b.cur, value...)
		} else {
			b.cur = appendJSONString(b.cur, value)
		}
		return
	}
	b.cur = append(b.cur, name...)
	b.cur = append(b.cur, ": "...)
	b.cur = append(b.cur, value...)
	b.cur = append(b.cur, '\n')
}

// computed adds a variable the model fills in per reading.
func (b *templateBuilder) computed(name string, s slot, prec int, base float64) {
	if b.t.json {
		b.cur = append(b.cur, ',')
		b.cur = appendJSONString(b.cur, name)
		b.cur = append(b.cur, ':')
	} else {
		b.cur = append(b.cur, name...)
		b.cur = append(b.cur, ": "...)
	}
	b.t.segs = append(b.t.segs, segment{lit: b.cur, slot: s, prec: prec, base: base})
	b.cur = nil
	if !b.t.json {
		b.cur = append(b.cur, '\n')
	}
}

func (b *templateBuilder) build() template {
	if b.t.json {
		b.cur = append(b.cur, '}')
	}
	b.t.tail = b.cur
	return b.t
}

// Defaults for what a dump does not say.
const (
	defaultChargeLow  = 20  // %, NUT drivers' usual battery.charge.low
	defaultRuntimeLow = 120 // s
	overloadExponent  = 1.2 // Peukert-like: runtime falls faster than the load rises
	minEffectiveLoad  = 5   // %: a UPS draws this much itself even at no load
	rechargeSlowdown  = 4   // recharging takes this many times the runtime at base load
)

// model is one unit's physics and its payload template. It is owned by
// one scheduler goroutine: nothing in it is safe for concurrent use.
type model struct {
	rng    *rand.Rand
	events []Event // the events that concern this unit
	tmpl   template

	nomV, nomF  float64 // mains nominal voltage and frequency
	vOffset     float64 // this site's steady deviation from nominal
	outV        float64 // regulated output voltage
	baseLoad    float64 // % when not overloaded
	overLoad    float64 // % during an Overload event
	runtimeFull float64 // s of runtime from 100 % charge at baseLoad
	chargeLow   float64
	runtimeLow  float64 // 0: the unit has no runtime threshold
	battNom     float64 // battery nominal voltage
	upsTemp     float64 // °C at no load
	battTemp    float64
	extraAlways string // status tokens kept from the dump (RB, ALARM...)
	extraOnline string // tokens that only make sense on mains (TRIM, BYPASS...)
	chargeRate  float64
	charge      float64 // % now
	last        time.Duration
}

// power is the state the events impose at an instant.
type power struct {
	onBattery, forceLow, overload, commLoss bool
}

func (m *model) powerAt(t time.Duration) power {
	var p power
	for i := range m.events {
		e := &m.events[i]
		if !e.activeAt(t) {
			continue
		}
		switch e.Kind {
		case Outage, Flicker:
			p.onBattery = true
		case LowBattery:
			p.onBattery, p.forceLow = true, true
		case Overload:
			p.overload = true
		case CommLoss:
			p.commLoss = true
		}
	}
	return p
}

func (m *model) loadFor(p power) float64 {
	if p.overload {
		return m.overLoad
	}
	return m.baseLoad
}

// runtimeScale is how much longer (or shorter) the battery lasts at load
// than at the base load.
func (m *model) runtimeScale(load float64) float64 {
	return math.Pow(max(m.baseLoad, minEffectiveLoad)/max(load, minEffectiveLoad), overloadExponent)
}

// advance integrates the battery charge from the last reading to t,
// splitting the span at event boundaries so a reading taken long after an
// outage began drains only for the part spent on battery.
func (m *model) advance(t time.Duration) {
	a := m.last
	for a < t {
		b := t
		for i := range m.events {
			e := &m.events[i]
			if e.At > a && e.At < b {
				b = e.At
			}
			if end := e.At + e.For; e.For > 0 && end > a && end < b {
				b = end
			}
		}
		p := m.powerAt(a)
		dt := (b - a).Seconds()
		if p.forceLow {
			m.charge = min(m.charge, m.chargeLow)
		}
		if p.onBattery {
			m.charge -= 100 / (m.runtimeFull * m.runtimeScale(m.loadFor(p))) * dt
		} else {
			m.charge += m.chargeRate * dt
		}
		m.charge = min(max(m.charge, 0), 100)
		a = b
	}
	if t > m.last {
		m.last = t
	}
}

// values is one reading's computed variables.
type values struct {
	onBattery, charging, low, over bool
	inV, inF, outV, outF           float64
	load, charge, runtime, battV   float64
	upsTemp, battTemp              float64
}

// sample advances the model to offset t and draws one reading's values.
func (m *model) sample(t time.Duration) values {
	m.advance(t)
	p := m.powerAt(t)
	if p.forceLow {
		m.charge = min(m.charge, m.chargeLow)
	}
	var v values
	v.onBattery = p.onBattery
	v.over = p.overload
	v.load = max(m.loadFor(p)+m.rng.NormFloat64()*0.8, 0)
	v.charge = m.charge
	// The runtime estimate uses the load without its noise: UPS firmware
	// smooths it, and a jittering estimate would flap LB near
	// battery.runtime.low.
	v.runtime = m.runtimeFull * m.charge / 100 * m.runtimeScale(m.loadFor(p))
	v.low = m.charge <= m.chargeLow || (m.runtimeLow > 0 && v.runtime <= m.runtimeLow)
	v.charging = !p.onBattery && m.charge < 100
	v.outV = m.outV + m.rng.NormFloat64()*m.outV*0.002
	v.outF = m.nomF + m.rng.NormFloat64()*0.01
	if !p.onBattery {
		v.inV = m.nomV + m.vOffset + m.rng.NormFloat64()*m.nomV*0.004
		v.inF = m.nomF + m.rng.NormFloat64()*0.02
		v.battV = m.battNom * (1.07 + 0.06*m.charge/100)
	} else {
		v.battV = m.battNom * (0.875 + 0.19*m.charge/100)
	}
	v.battV += m.rng.NormFloat64() * m.battNom * 0.001
	v.upsTemp = m.upsTemp + v.load*0.05 + m.rng.NormFloat64()*0.1
	v.battTemp = m.battTemp + m.rng.NormFloat64()*0.1
	return v
}

// appendReading appends the payload of the reading at offset t (taken at
// wall time ts) to dst. It allocates nothing once dst has room.
func (m *model) appendReading(dst []byte, t time.Duration, ts time.Time) []byte {
	v := m.sample(t)
	if m.tmpl.json {
		dst = append(dst, `{"ts":`...)
		dst = strconv.AppendInt(dst, ts.UnixMilli(), 10)
	}
	for i := range m.tmpl.segs {
		s := &m.tmpl.segs[i]
		dst = append(dst, s.lit...)
		switch s.slot {
		case slotStatus:
			if m.tmpl.json {
				dst = append(dst, '"')
			}
			dst = m.appendStatus(dst, &v)
			if m.tmpl.json {
				dst = append(dst, '"')
			}
		case slotInputVoltage:
			dst = appendNum(dst, v.inV, s.prec)
		case slotInputFrequency:
			dst = appendNum(dst, v.inF, s.prec)
		case slotOutputVoltage:
			dst = appendNum(dst, v.outV, s.prec)
		case slotOutputFrequency:
			dst = appendNum(dst, v.outF, s.prec)
		case slotLoad:
			dst = appendNum(dst, v.load, s.prec)
		case slotCharge:
			dst = appendNum(dst, v.charge, s.prec)
		case slotRuntime:
			dst = appendNum(dst, v.runtime, s.prec)
		case slotBatteryVoltage:
			dst = appendNum(dst, v.battV, s.prec)
		case slotUPSTemperature:
			dst = appendNum(dst, v.upsTemp, s.prec)
		case slotBatteryTemperature:
			dst = appendNum(dst, v.battTemp, s.prec)
		case slotScaled:
			dst = appendNum(dst, s.base*v.load/max(m.baseLoad, minEffectiveLoad), s.prec)
		}
	}
	return append(dst, m.tmpl.tail...)
}

func (m *model) appendStatus(dst []byte, v *values) []byte {
	if v.onBattery {
		dst = append(dst, "OB DISCHRG"...)
	} else {
		dst = append(dst, "OL"...)
		if v.charging {
			dst = append(dst, " CHRG"...)
		}
	}
	if v.low {
		dst = append(dst, " LB"...)
	}
	if v.over {
		dst = append(dst, " OVER"...)
	}
	if !v.onBattery {
		dst = append(dst, m.extraOnline...)
	}
	return append(dst, m.extraAlways...)
}

var pow10 = [...]float64{1, 10, 100, 1e3, 1e4, 1e5, 1e6}

// appendNum formats v with prec decimals, never as -0.
func appendNum(dst []byte, v float64, prec int) []byte {
	prec = min(max(prec, 0), len(pow10)-1)
	if math.Abs(v)*pow10[prec] < 0.5 || math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	return strconv.AppendFloat(dst, v, 'f', prec, 64)
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 (dumps from
// old firmware carry Latin-1) becomes U+FFFD so the payload stays valid.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}

// newModel builds a unit's model. With a dump, the unit reports the
// dump's variables and the dump's plausible numbers set the base values;
// without one, it reports a fixed set of the variables upswatch uses. The
// rng must be the unit's own, so a unit's readings do not depend on how
// many others there are.
func newModel(serial ups.Serial, rng *rand.Rand, dump *Dump, events []Event, format string) *model {
	m := &model{rng: rng, events: events}
	get := func(name string, lo, hi float64) (float64, bool) {
		if dump == nil {
			return 0, false
		}
		s, ok := dump.Get(name)
		if !ok {
			return 0, false
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < lo || f > hi {
			return 0, false
		}
		return f, true
	}

	// Mains. The draws happen whether or not the dump decides, so every
	// unit consumes its random stream the same way.
	us := rng.Float64() < 0.3
	switch v, ok := get("input.voltage.nominal", 90, 260); {
	case ok:
		m.nomV = v
	default:
		if v, ok := get("input.voltage", 90, 280); ok {
			m.nomV = 230
			if v < 150 {
				m.nomV = 120
			}
		} else if us {
			m.nomV = 120
		} else {
			m.nomV = 230
		}
	}
	if f, ok := get("input.frequency.nominal", 45, 65); ok {
		m.nomF = f
	} else if f, ok := get("input.frequency", 45, 65); ok {
		m.nomF = 50
		if f > 55 {
			m.nomF = 60
		}
	} else if m.nomV < 150 {
		m.nomF = 60
	} else {
		m.nomF = 50
	}
	m.vOffset = rng.NormFloat64() * m.nomV * 0.01
	if v, ok := get("input.voltage", 0.9*m.nomV, 1.1*m.nomV); ok {
		m.vOffset = v - m.nomV
	}
	m.outV = m.nomV
	if v, ok := get("output.voltage.nominal", 90, 260); ok {
		m.outV = v
	} else if v, ok := get("output.voltage", 0.85*m.nomV, 1.15*m.nomV); ok {
		m.outV = v
	}

	// Load and battery.
	m.baseLoad = 10 + rng.Float64()*50
	if v, ok := get("ups.load", 0, 100); ok {
		m.baseLoad = v
	}
	m.overLoad = 105 + rng.Float64()*25
	m.charge = 100
	if v, ok := get("battery.charge", 0, 100); ok {
		m.charge = v
	}
	m.runtimeFull = 900 + rng.Float64()*2700
	if v, ok := get("battery.runtime", 1, 1e6); ok {
		// The dump's runtime is at its charge; scale to a full battery.
		m.runtimeFull = v * 100 / max(m.charge, 10)
	}
	m.chargeRate = 100 / (rechargeSlowdown * m.runtimeFull)
	m.chargeLow = defaultChargeLow
	if v, ok := get("battery.charge.low", 0, 99); ok {
		m.chargeLow = v
	}
	if dump == nil {
		m.runtimeLow = defaultRuntimeLow
	} else if v, ok := get("battery.runtime.low", 0, 1e5); ok {
		m.runtimeLow = v
	}
	m.battNom = 24
	if v, ok := get("battery.voltage.nominal", 1, 1000); ok {
		m.battNom = v
	} else if v, ok := get("battery.voltage", 1, 1000); ok {
		m.battNom = math.Max(12, math.Round(v/1.13/12)*12)
	}
	m.upsTemp = 22 + rng.Float64()*6
	if v, ok := get("ups.temperature", -10, 60); ok {
		m.upsTemp = v - m.baseLoad*0.05
	}
	m.battTemp = m.upsTemp + 2
	if v, ok := get("battery.temperature", -10, 60); ok {
		m.battTemp = v
	}
	if dump != nil {
		if s, ok := dump.Get("ups.status"); ok {
			m.extraAlways, m.extraOnline = statusExtras(s)
		}
	}
	m.tmpl = buildTemplate(serial, dump, format == FormatJSON, m.nomV, m.chargeLow, m.runtimeLow, m.battNom)
	return m
}

// statusExtras keeps the tokens of a dump's ups.status that the model does
// not decide: RB, ALARM and unknown ones always; those describing the
// mains path (TRIM, BOOST, BYPASS, OFF, HB) only while on line. Each token
// gets a leading space.
func statusExtras(s string) (always, online string) {
	var a, o strings.Builder
	for tok := range strings.FieldsSeq(s) {
		switch tok {
		case "OL", "OB", "LB", "CHRG", "DISCHRG", "OVER", "FSD":
		case "TRIM", "BOOST", "BYPASS", "OFF", "HB":
			o.WriteString(" " + tok)
		default:
			a.WriteString(" " + tok)
		}
	}
	return a.String(), o.String()
}

func buildTemplate(serial ups.Serial, dump *Dump, json bool, nomV, chargeLow, runtimeLow, battNom float64) template {
	b := newTemplateBuilder(json)
	if dump == nil {
		num := func(v float64, prec int) string { return string(appendNum(nil, v, prec)) }
		b.computed("ups.status", slotStatus, 0, 0)
		b.computed("ups.load", slotLoad, 0, 0)
		b.computed("input.voltage", slotInputVoltage, 1, 0)
		b.static("input.voltage.nominal", num(nomV, 0), true)
		b.computed("input.frequency", slotInputFrequency, 1, 0)
		b.computed("output.voltage", slotOutputVoltage, 1, 0)
		b.computed("battery.charge", slotCharge, 0, 0)
		b.static("battery.charge.low", num(chargeLow, 0), true)
		b.computed("battery.runtime", slotRuntime, 0, 0)
		b.static("battery.runtime.low", num(runtimeLow, 0), true)
		b.computed("battery.voltage", slotBatteryVoltage, 1, 0)
		b.static("battery.voltage.nominal", num(battNom, 0), true)
		b.computed("ups.temperature", slotUPSTemperature, 1, 0)
		b.static("device.mfr", "upswatch", false)
		b.static("device.model", "Simulated UPS", false)
		b.static("device.serial", string(serial), false)
		b.static("device.type", "ups", false)
		return b.build()
	}
	hasStatus := false
	for _, dv := range dump.Vars {
		d, ok := dynamic[dv.Name]
		if !ok {
			b.static(dv.Name, dv.Value, false)
			continue
		}
		prec := d.prec
		if d.slot != slotStatus {
			if i := strings.IndexByte(dv.Value, '.'); i >= 0 {
				prec = len(dv.Value) - i - 1
			} else if dv.Value != "" {
				prec = 0
			}
		}
		if d.slot == slotScaled {
			base, err := strconv.ParseFloat(dv.Value, 64)
			if err != nil || base < 0 || base > 1e7 {
				b.static(dv.Name, dv.Value, false)
				continue
			}
			b.computed(dv.Name, slotScaled, prec, base)
			continue
		}
		hasStatus = hasStatus || d.slot == slotStatus
		b.computed(dv.Name, d.slot, prec, 0)
	}
	if !hasStatus {
		// Every consumer keys on ups.status; a dump without one still
		// gets it, so events show.
		b.computed("ups.status", slotStatus, 0, 0)
	}
	return b.build()
}
