package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/ups"
)

const testSerial ups.Serial = "123456789012"

var epoch = time.UnixMilli(1764000000000)

// reading renders the model's reading at offset t and decodes it as the
// ingest would: a JSON object of NUT variables.
func reading(t *testing.T, m *model, at time.Duration) map[string]any {
	t.Helper()
	b := m.appendReading(nil, at, epoch.Add(at))
	var v map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("payload at %v is not JSON: %v\n%s", at, err, b)
	}
	return v
}

func num(t *testing.T, v map[string]any, name string) float64 {
	t.Helper()
	n, ok := v[name].(json.Number)
	if !ok {
		t.Fatalf("%s = %#v, want a JSON number", name, v[name])
	}
	f, err := n.Float64()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f
}

func str(t *testing.T, v map[string]any, name string) string {
	t.Helper()
	s, ok := v[name].(string)
	if !ok {
		t.Fatalf("%s = %#v, want a string", name, v[name])
	}
	return s
}

func synthetic(seed int64, events ...Event) *model {
	return newModel(testSerial, unitRand(seed, testSerial), nil, events, FormatJSON)
}

func TestSyntheticReadingFollowsDeviceContract(t *testing.T) {
	m := synthetic(1)
	v := reading(t, m, 0)
	if got := num(t, v, "ts"); got != float64(epoch.UnixMilli()) {
		t.Errorf("ts = %v, want %v", got, epoch.UnixMilli())
	}
	if s := str(t, v, "ups.status"); s != "OL" {
		t.Errorf("ups.status = %q, want OL (full battery on mains)", s)
	}
	nom := num(t, v, "input.voltage.nominal")
	if nom != 230 && nom != 120 {
		t.Fatalf("input.voltage.nominal = %v", nom)
	}
	if in := num(t, v, "input.voltage"); math.Abs(in-nom) > 0.05*nom {
		t.Errorf("input.voltage = %v, want near %v", in, nom)
	}
	wantF := 50.0
	if nom == 120 {
		wantF = 60
	}
	if f := num(t, v, "input.frequency"); math.Abs(f-wantF) > 0.2 {
		t.Errorf("input.frequency = %v, want near %v", f, wantF)
	}
	if l := num(t, v, "ups.load"); l < 5 || l > 65 {
		t.Errorf("ups.load = %v", l)
	}
	if c := num(t, v, "battery.charge"); c != 100 {
		t.Errorf("battery.charge = %v, want 100", c)
	}
	if r := num(t, v, "battery.runtime"); r < 300 {
		t.Errorf("battery.runtime = %v", r)
	}
	if s := str(t, v, "device.serial"); s != string(testSerial) {
		t.Errorf("device.serial = %q", s)
	}
	// Every value is one the ingest accepts for the variable.
	for name, val := range v {
		vr, ok := ups.LookupVar(name)
		if !ok {
			continue
		}
		f := num(t, v, name)
		if info := ups.Vars[vr]; f < info.Min || f > info.Max {
			t.Errorf("%s = %v outside [%v, %v]", name, val, info.Min, info.Max)
		}
	}
}

func TestReadingsAreDeterministic(t *testing.T) {
	render := func(seed int64) []byte {
		m := synthetic(seed, Event{Kind: Outage, At: 30 * time.Second, For: time.Minute})
		var out []byte
		for at := time.Duration(0); at < 3*time.Minute; at += 10 * time.Second {
			out = m.appendReading(out, at, epoch.Add(at))
			out = append(out, '\n')
		}
		return out
	}
	a, b := render(7), render(7)
	if !bytes.Equal(a, b) {
		t.Fatalf("same seed, different readings:\n%s\n%s", a, b)
	}
	if bytes.Equal(a, render(8)) {
		t.Fatal("different seeds gave identical readings")
	}
}

func TestOutageTimeline(t *testing.T) {
	const step = 10 * time.Second
	outage := Event{Kind: Outage, At: time.Minute, For: 2 * time.Minute}
	m := synthetic(3, outage)
	var lastCharge, lastRuntime float64
	sawCharging := false
	for at := time.Duration(0); at <= 6*time.Minute; at += step {
		v := reading(t, m, at)
		status := str(t, v, "ups.status")
		charge := num(t, v, "battery.charge")
		runtime := num(t, v, "battery.runtime")
		switch {
		case at < outage.At:
			if status != "OL" || charge != 100 {
				t.Fatalf("%v before outage: status %q charge %v", at, status, charge)
			}
		case at < outage.At+outage.For:
			if status != "OB DISCHRG" {
				t.Fatalf("%v in outage: status %q, want OB DISCHRG", at, status)
			}
			if iv := num(t, v, "input.voltage"); iv != 0 {
				t.Fatalf("%v in outage: input.voltage %v", at, iv)
			}
			// The charge is printed as a whole percent, so it may hold
			// for a reading; the runtime falls every time.
			if at > outage.At && (charge > lastCharge || runtime >= lastRuntime) {
				t.Fatalf("%v in outage: charge %v runtime %v not falling from %v, %v", at, charge, runtime, lastCharge, lastRuntime)
			}
		default:
			if status != "OL CHRG" {
				t.Fatalf("%v after outage: status %q, want OL CHRG", at, status)
			}
			if num(t, v, "input.voltage") < 100 {
				t.Fatalf("%v after outage: mains not back", at)
			}
			if sawCharging && charge < lastCharge {
				t.Fatalf("%v after outage: charge %v fell from %v", at, charge, lastCharge)
			}
			sawCharging = true
		}
		lastCharge, lastRuntime = charge, runtime
	}
	if !sawCharging || lastCharge >= 100 {
		t.Fatalf("recharge: final charge %v", lastCharge)
	}
}

// A 300-second battery at its base load drains 1/3 % per second: it
// crosses battery.charge.low (20) after 240 s on battery.
const drainDump = `# DEVICE:COMMENT: a small battery
battery.charge: 100
battery.charge.low: 20
battery.runtime: 300
battery.type: PbAc
battery.voltage: 13.6
battery.voltage.nominal: 12
device.model: Back-UPS "ES" 500
input.voltage: 231.0
input.voltage.nominal: 230
ups.load: 40
ups.realpower.nominal: 300
ups.realpower: 120
ups.serial: 4B1038P51197	#COMMENT: masked by user
ups.status: OL RB
ups.timer.shutdown: -1
`

func mustDump(t testing.TB, text string) *Dump {
	t.Helper()
	d, err := ParseDump(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return &d
}

func TestLowBatteryAfterDrain(t *testing.T) {
	d := mustDump(t, drainDump)
	m := newModel(testSerial, unitRand(1, testSerial), d, []Event{{Kind: Outage, At: 0}}, FormatJSON)
	var firstLB time.Duration = -1
	for at := time.Duration(0); at <= 400*time.Second; at += 5 * time.Second {
		v := reading(t, m, at)
		status := str(t, v, "ups.status")
		charge := num(t, v, "battery.charge")
		if !strings.HasPrefix(status, "OB DISCHRG") || !strings.HasSuffix(status, " RB") {
			t.Fatalf("%v: status %q, want OB DISCHRG ... RB", at, status)
		}
		hasLB := strings.Contains(status, " LB")
		if hasLB != (charge <= 20) {
			t.Fatalf("%v: status %q with charge %v", at, status, charge)
		}
		if hasLB && firstLB < 0 {
			firstLB = at
		}
		if charge < 0 || num(t, v, "battery.runtime") < 0 {
			t.Fatalf("%v: negative charge or runtime", at)
		}
	}
	if firstLB != 240*time.Second {
		t.Fatalf("LB first at %v, want 240s", firstLB)
	}
}

func TestEventEffects(t *testing.T) {
	tests := []struct {
		name   string
		ev     Event
		at     time.Duration
		status string
		check  func(t *testing.T, v map[string]any)
	}{
		{"before", Event{Kind: Overload, At: 10 * time.Second, For: 20 * time.Second}, 9 * time.Second, "OL", func(t *testing.T, v map[string]any) {
			if l := num(t, v, "ups.load"); l >= 100 {
				t.Errorf("load %v", l)
			}
		}},
		{"overload", Event{Kind: Overload, At: 10 * time.Second, For: 20 * time.Second}, 10 * time.Second, "OL OVER", func(t *testing.T, v map[string]any) {
			if l := num(t, v, "ups.load"); l <= 100 {
				t.Errorf("load %v, want > 100", l)
			}
		}},
		{"overload over", Event{Kind: Overload, At: 10 * time.Second, For: 20 * time.Second}, 30 * time.Second, "OL", nil},
		{"flicker", Event{Kind: Flicker, At: 10 * time.Second, For: FlickerDuration}, 11 * time.Second, "OB DISCHRG", func(t *testing.T, v map[string]any) {
			if f := num(t, v, "input.frequency"); f != 0 {
				t.Errorf("input.frequency %v on battery", f)
			}
		}},
		{"flicker over", Event{Kind: Flicker, At: 10 * time.Second, For: FlickerDuration}, 12 * time.Second, "OL CHRG", nil},
		{"low battery", Event{Kind: LowBattery, At: 10 * time.Second, For: time.Minute}, 10 * time.Second, "OB DISCHRG LB", func(t *testing.T, v map[string]any) {
			if c := num(t, v, "battery.charge"); c > defaultChargeLow {
				t.Errorf("charge %v", c)
			}
		}},
		// Mains is back but the battery is still below its low mark.
		{"low battery over", Event{Kind: LowBattery, At: 10 * time.Second, For: time.Minute}, 70 * time.Second, "OL CHRG LB", nil},
		{"comm loss keeps power", Event{Kind: CommLoss, At: 0, For: time.Minute}, 10 * time.Second, "OL", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := synthetic(5, tt.ev)
			reading(t, m, 0)
			v := reading(t, m, tt.at)
			if s := str(t, v, "ups.status"); s != tt.status {
				t.Fatalf("status %q, want %q", s, tt.status)
			}
			if tt.check != nil {
				tt.check(t, v)
			}
		})
	}
}

func TestDumpModelReportsDumpVariables(t *testing.T) {
	d := mustDump(t, drainDump)
	m := newModel(testSerial, unitRand(1, testSerial), d, []Event{{Kind: Outage, At: time.Minute}}, FormatJSON)
	v := reading(t, m, 0)
	if len(v) != len(d.Vars)+1 {
		t.Errorf("%d variables, want the dump's %d plus ts", len(v), len(d.Vars))
	}
	for _, dv := range d.Vars {
		if _, ok := v[dv.Name]; !ok {
			t.Errorf("%s missing", dv.Name)
		}
	}
	// Static variables are passed on verbatim as NUT strings.
	for name, want := range map[string]string{
		"device.model": `Back-UPS "ES" 500`, "ups.serial": "4B1038P51197",
		"ups.timer.shutdown": "-1", "battery.charge.low": "20", "battery.type": "PbAc",
	} {
		if got := str(t, v, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if s := str(t, v, "ups.status"); s != "OL RB" {
		t.Errorf("ups.status = %q, want OL RB", s)
	}
	if iv := num(t, v, "input.voltage"); math.Abs(iv-231) > 5 {
		t.Errorf("input.voltage = %v, want near the dump's 231", iv)
	}
	if l := num(t, v, "ups.load"); math.Abs(l-40) > 4 {
		t.Errorf("ups.load = %v, want near the dump's 40", l)
	}
	if p := num(t, v, "ups.realpower"); math.Abs(p-120) > 15 {
		t.Errorf("ups.realpower = %v, want near 120", p)
	}
	if bv := num(t, v, "battery.voltage"); bv < 12.5 || bv > 14 {
		t.Errorf("battery.voltage = %v for a 12 V battery on mains", bv)
	}
	v = reading(t, m, time.Minute)
	if s := str(t, v, "ups.status"); s != "OB DISCHRG RB" {
		t.Errorf("in outage ups.status = %q, want OB DISCHRG RB", s)
	}
}

func TestUPSCFormat(t *testing.T) {
	d := mustDump(t, drainDump)
	m := newModel(testSerial, unitRand(1, testSerial), d, []Event{{Kind: Outage, At: time.Minute}}, FormatUPSC)
	for _, tc := range []struct {
		at     time.Duration
		status string
	}{{0, "OL RB"}, {time.Minute, "OB DISCHRG RB"}} {
		out := string(m.appendReading(nil, tc.at, epoch.Add(tc.at)))
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if !strings.HasSuffix(out, "\n") || len(lines) != len(d.Vars) {
			t.Fatalf("upsc output has %d lines, want %d:\n%s", len(lines), len(d.Vars), out)
		}
		for i, dv := range d.Vars {
			name, value, ok := strings.Cut(lines[i], ": ")
			if !ok || name != dv.Name {
				t.Fatalf("line %d = %q, want %s: ...", i, lines[i], dv.Name)
			}
			if _, dyn := dynamic[name]; !dyn && value != dv.Value {
				t.Errorf("%s = %q, want %q verbatim", name, value, dv.Value)
			}
			if name == "ups.status" && value != tc.status {
				t.Errorf("at %v ups.status = %q, want %q", tc.at, value, tc.status)
			}
			// Computed numbers keep the dump's number of decimals.
			if name == "battery.voltage" && !strings.Contains(value, ".") {
				t.Errorf("battery.voltage = %q, want one decimal like the dump", value)
			}
		}
	}
}

func TestDumpWithoutStatusGetsOne(t *testing.T) {
	d := mustDump(t, "battery.charge: 000\ninput.voltage: 114\nups.load: 040\n")
	m := newModel(testSerial, unitRand(1, testSerial), d, []Event{{Kind: Outage, At: time.Second}}, FormatJSON)
	if s := str(t, reading(t, m, 0), "ups.status"); s != "OL CHRG LB" {
		t.Errorf("ups.status = %q, want OL CHRG LB (empty battery)", s)
	}
	v := reading(t, m, time.Second)
	if s := str(t, v, "ups.status"); s != "OB DISCHRG LB" {
		t.Errorf("ups.status = %q", s)
	}
}

func TestParseDump(t *testing.T) {
	d, err := ParseDump(strings.NewReader("# header\r\n\r\nbattery.charge: 100\r\n" +
		"Init SSL without certificate database\n" +
		"battery.date: 2624/00/02       #<- Huh ?\n" +
		"device.serial:\t#COMMENT: masked by user\n" +
		"ups.firmware: 1.2#3\n" +
		"battery.charge: 50\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []DumpVar{
		{"battery.charge", "100"}, {"battery.date", "2624/00/02"},
		{"device.serial", ""}, {"ups.firmware", "1.2#3"},
	}
	if len(d.Vars) != len(want) {
		t.Fatalf("vars = %q, want %q", d.Vars, want)
	}
	for i := range want {
		if d.Vars[i] != want[i] {
			t.Errorf("var %d = %q, want %q", i, d.Vars[i], want[i])
		}
	}
	for _, bad := range []string{"", "# only a comment\n", "no colon here\n"} {
		if _, err := ParseDump(strings.NewReader(bad)); !errors.Is(err, ErrBadDump) {
			t.Errorf("ParseDump(%q) err = %v, want ErrBadDump", bad, err)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{`q"b\s`, `q"b\s`},
		{"tab\tnl\n\x01", "tab\tnl\n\x01"},
		{"héllo", "héllo"},
		{"latin1 \xe9", "latin1 \ufffd"},
	}
	for _, tt := range tests {
		b := appendJSONString(nil, tt.in)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q -> %s: %v", tt.in, b, err)
		}
		if got != tt.want {
			t.Errorf("%q -> %s decodes to %q, want %q", tt.in, b, got, tt.want)
		}
	}
}

func TestAppendNum(t *testing.T) {
	tests := []struct {
		v    float64
		prec int
		want string
	}{
		{229.96, 1, "230.0"}, {-0.01, 1, "0.0"}, {-0.4, 0, "0"}, {87.5, 0, "88"},
		{math.NaN(), 1, "0.0"}, {math.Inf(1), 0, "0"}, {13.6, 2, "13.60"},
	}
	for _, tt := range tests {
		if got := string(appendNum(nil, tt.v, tt.prec)); got != tt.want {
			t.Errorf("appendNum(%v, %d) = %s, want %s", tt.v, tt.prec, got, tt.want)
		}
	}
}

func BenchmarkAppendReading(b *testing.B) {
	events := []Event{{Kind: Outage, At: time.Hour, For: time.Hour}, {Kind: Overload, At: 3 * time.Hour, For: time.Minute}}
	d := mustDump(b, drainDump)
	for _, bc := range []struct {
		name   string
		dump   *Dump
		format string
	}{
		{"synthetic/json", nil, FormatJSON},
		{"dump/json", d, FormatJSON},
		{"dump/upsc", d, FormatUPSC},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := newModel(testSerial, unitRand(1, testSerial), bc.dump, events, bc.format)
			buf := make([]byte, 0, 1024)
			var at time.Duration
			for b.Loop() {
				buf = m.appendReading(buf[:0], at, epoch.Add(at))
				at += time.Second
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
