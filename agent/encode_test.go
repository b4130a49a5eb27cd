package agent

import (
	"errors"
	"testing"
	"time"

	"github.com/upswatch/upswatch/agent/nut"
	"github.com/upswatch/upswatch/ingest/payload"
)

// What the agent publishes decodes with the server's own decoder (this
// test, not the agent, imports it): event time, status, numbers from
// NUT's strings, texts with quotes and non-ASCII, a replay array.
func TestEncodeReadingDecodes(t *testing.T) {
	at := time.UnixMilli(1764000000123)
	for _, tc := range []struct {
		name   string
		vars   []nut.Var
		status string
		num    map[string]float64
		text   map[string]string
	}{
		{"on line", []nut.Var{{Name: "ups.status", Value: "OL CHRG"}, {Name: "battery.charge", Value: "100"}, {Name: "input.voltage", Value: "230.5"}},
			"OL CHRG", map[string]float64{"battery.charge": 100, "input.voltage": 230.5}, nil},
		{"quotes and unicode", []nut.Var{{Name: "ups.status", Value: "OB DISCHRG"}, {Name: "ups.mfr", Value: `ACME "Power" \ Ltd – Điện`}, {Name: "battery.runtime", Value: "1490"}},
			"OB DISCHRG", map[string]float64{"battery.runtime": 1490}, map[string]string{"ups.mfr": `ACME "Power" \ Ltd – Điện`}},
		{"duplicate and a ts variable are dropped", []nut.Var{{Name: "ups.status", Value: "OL"}, {Name: "ts", Value: "5"}, {Name: "battery.charge", Value: "90"}, {Name: "battery.charge", Value: "80"}},
			"OL", map[string]float64{"battery.charge": 90}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := encodeReading(at, tc.vars)
			for _, p := range [][]byte{enc, append(append(append([]byte("["), enc...), ','), append(enc, ']')...)} {
				rs, err := payload.New(payload.Limits{}).Decode("123456789012", p, at.Add(time.Hour), nil)
				if err != nil {
					t.Fatalf("decode %s: %v", p, err)
				}
				r := rs[0]
				if !r.Time.Equal(at) || r.Status.Raw != tc.status {
					t.Errorf("time %v status %q", r.Time, r.Status.Raw)
				}
				for name, want := range tc.num {
					found := false
					for _, m := range r.Metrics {
						if m.Name == name && m.Value == want {
							found = true
						}
					}
					if !found {
						t.Errorf("%s = %v missing from %+v", name, want, r.Metrics)
					}
				}
				for name, want := range tc.text {
					found := false
					for _, x := range r.Texts {
						if x.Name == name && x.Value == want {
							found = true
						}
					}
					if !found {
						t.Errorf("%s = %q missing from %+v", name, want, r.Texts)
					}
				}
			}
		})
	}
}

func TestSerialFromVars(t *testing.T) {
	for _, tc := range []struct {
		vars []nut.Var
		want string
		err  error
	}{
		{[]nut.Var{{Name: "device.serial", Value: "123456789012"}}, "123456789012", nil},
		{[]nut.Var{{Name: "device.serial", Value: "123456789012"}, {Name: "ups.serial", Value: " 1234567890123456 "}}, "1234567890123456", nil},
		{[]nut.Var{{Name: "ups.serial", Value: "AS1234"}, {Name: "device.serial", Value: "123456789012"}}, "123456789012", nil},
		{[]nut.Var{{Name: "ups.serial", Value: "12345678901"}}, "", ErrNoSerial},
		{nil, "", ErrNoSerial},
	} {
		got, err := SerialFromVars(tc.vars)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%v: %q, %v; want %q, %v", tc.vars, got, err, tc.want, tc.err)
		}
	}
}
