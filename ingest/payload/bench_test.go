package payload

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/upswatch/upswatch/ups"
)

// benchVars is a typical reading: 20 variables as a NUT host bridge sends
// them (values as strings, as NUT reports them), numbers or strings.
var benchVars = []struct {
	name, value string
	number      bool // send as a JSON number
}{
	{"ups.status", "OL CHRG", false},
	{"battery.charge", "100", true},
	{"battery.charge.low", "10", false},
	{"battery.runtime", "2280", true},
	{"battery.runtime.low", "120", false},
	{"battery.voltage", "27.0", true},
	{"battery.voltage.nominal", "24", false},
	{"battery.type", "PbAc", false},
	{"input.voltage", "230.4", true},
	{"input.voltage.nominal", "230", false},
	{"input.frequency", "50.0", true},
	{"input.transfer.low", "170", false},
	{"input.transfer.high", "280", false},
	{"output.voltage", "230.0", true},
	{"output.frequency", "50.0", true},
	{"ups.load", "17", true},
	{"ups.realpower.nominal", "900", false},
	{"ups.temperature", "31.5", true},
	{"ups.beeper.status", "enabled", false},
	{"ups.test.result", "No test initiated", false},
}

func benchObject(ts int64) []byte {
	var b bytes.Buffer
	b.WriteString(`{"ts":`)
	b.WriteString(strconv.FormatInt(ts, 10))
	for _, v := range benchVars {
		b.WriteString(`,"` + v.name + `":`)
		if v.number {
			b.WriteString(v.value)
		} else {
			b.WriteString(`"` + v.value + `"`)
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

func benchArray(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(benchObject(1764000000000 - int64(n-i)*1000))
	}
	b.WriteByte(']')
	return b.Bytes()
}

func benchUpsc() []byte {
	var b bytes.Buffer
	for _, v := range benchVars {
		b.WriteString(v.name + ": " + v.value + "\n")
	}
	return b.Bytes()
}

func benchDecode(b *testing.B, payload []byte, readings int) {
	d := New(Limits{})
	dst := make([]ups.Reading, 0, readings)
	if _, err := d.Decode(testSerial, payload, received, dst); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		rs, err := d.Decode(testSerial, payload, received, dst[:0])
		if err != nil || len(rs) != readings {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*readings), "ns/reading")
}

func BenchmarkDecodeJSONObject(b *testing.B) { benchDecode(b, benchObject(1764000000000), 1) }

func BenchmarkDecodeJSONArray200(b *testing.B) { benchDecode(b, benchArray(200), 200) }

func BenchmarkDecodeUpsc(b *testing.B) { benchDecode(b, benchUpsc(), 1) }

// The baselines decode the same JSON with encoding/json into maps, which
// is what this package replaces: they do no validation at all.

func BenchmarkBaselineEncodingJSONObject(b *testing.B) {
	payload := benchObject(1764000000000)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBaselineEncodingJSONArray200(b *testing.B) {
	payload := benchArray(200)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		var m []map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*200), "ns/reading")
}
