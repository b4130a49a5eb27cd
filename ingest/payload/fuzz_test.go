package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"testing"

	"github.com/upswatch/upswatch/ups"
)

// FuzzDecode checks that Decode never panics, that anything accepted
// satisfies the validation invariants, and that accepted JSON means what
// encoding/json says it means.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"ts":1764000000000,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":"87","battery.runtime":1490}`,
		`[{"ts":"2025-11-24T15:00:00Z","ups.load":1},{"ups.status":"OL","x.y":"a\u00e9\ud83d\ude00"}]`,
		`{"x.on":true,"x.off":false,"x.n":null,"ups.serial":"0123","battery.charge":"","x.e":-1.5e3}`,
		"ups.status: OL OB\t#BAD: x\nbattery.charge: 100\ndevice.mfr:\n# c\r\nups.id: Rack#3\n",
		`{"ups.load":"NaN"}`, `{"x":1e400}`, `{"battery.charge":250}`, `{"ts":1764000000,"a":1}`,
		`[]`, `{}`, `{"a":{"b":1}}`, "\ufeff{\"a\":1}", `{"a":"\ud800\u0041"}`,
	} {
		f.Add([]byte(s))
	}
	lim := Limits{MaxBytes: 1 << 16, MaxReadings: 64, MaxFields: 64}
	d := New(lim)
	maxTime := received.Add(d.Limits().MaxFuture)
	f.Fuzz(func(t *testing.T, data []byte) {
		prior := []ups.Reading{{Serial: "999999999999"}}
		rs, err := d.Decode(testSerial, data, received, prior)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if !slices.Contains(Reasons(), e.Reason) || e.Index < -1 || e.Msg == "" {
				t.Fatalf("bad error %+v", e)
			}
			if len(rs) != 1 || rs[0].Serial != "999999999999" {
				t.Fatalf("dst changed on error")
			}
			return
		}
		rs = rs[1:]
		if len(rs) == 0 || len(rs) > lim.MaxReadings {
			t.Fatalf("accepted with %d readings", len(rs))
		}
		for i := range rs {
			r := &rs[i]
			if r.Serial != testSerial || r.Time.IsZero() || r.Time.Location() != received.Location() ||
				r.Time.Before(minTime) || r.Time.After(maxTime) {
				t.Fatalf("reading %d: bad serial or time %q %v", i, r.Serial, r.Time)
			}
			if len(r.Metrics)+len(r.Texts) == 0 && !r.HasStatus {
				t.Fatalf("reading %d: empty", i)
			}
			for _, m := range r.Metrics {
				if !validName([]byte(m.Name)) || math.IsNaN(m.Value) || math.IsInf(m.Value, 0) {
					t.Fatalf("reading %d: bad metric %q = %v", i, m.Name, m.Value)
				}
				if v, ok := ups.LookupVar(m.Name); ok {
					if got, _ := r.Num(v); got != m.Value || m.Value < ups.Vars[v].Min || m.Value > ups.Vars[v].Max {
						t.Fatalf("reading %d: %s = %v out of range or not indexed", i, m.Name, m.Value)
					}
				} else if math.Abs(m.Value) > ups.AbsurdLimit {
					t.Fatalf("reading %d: %s = %v absurd", i, m.Name, m.Value)
				}
			}
			for _, x := range r.Texts {
				if !validName([]byte(x.Name)) || x.Name == "ups.status" {
					t.Fatalf("reading %d: bad text name %q", i, x.Name)
				}
			}
		}
		body := bytes.TrimPrefix(data, []byte("\ufeff"))
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
			compareWithEncodingJSON(t, body, rs)
		}
	})
}

// compareWithEncodingJSON checks accepted JSON against encoding/json: it
// must be valid, and every member must be in the reading with the value
// encoding/json reads.
func compareWithEncodingJSON(t *testing.T, data []byte, rs []ups.Reading) {
	t.Helper()
	if !json.Valid(data) {
		t.Fatalf("accepted invalid JSON %q", data)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var top any
	if err := dec.Decode(&top); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	var objs []any
	if arr, ok := top.([]any); ok {
		objs = arr
	} else {
		objs = []any{top}
	}
	if len(objs) != len(rs) {
		t.Fatalf("%d readings, encoding/json has %d objects", len(rs), len(objs))
	}
	for i, o := range objs {
		obj, ok := o.(map[string]any)
		if !ok {
			t.Fatalf("accepted a non-object element %T", o)
		}
		r := &rs[i]
		count := 0
		for k, v := range obj {
			if k == "ts" || v == nil {
				continue
			}
			var want string // the value as text
			switch v := v.(type) {
			case json.Number:
				want = v.String()
			case string:
				want = v
			case bool:
				want = strconv.FormatBool(v)
			default:
				t.Fatalf("accepted %q of type %T", k, v)
			}
			if k == "ups.status" {
				if !r.HasStatus || r.Status.Raw != want {
					t.Fatalf("ups.status %q, reading has %v %q", want, r.HasStatus, r.Status.Raw)
				}
				count++
				continue
			}
			if s, ok := r.Text(k); ok {
				if s != want {
					t.Fatalf("%s: text %q, encoding/json %q", k, s, want)
				}
				count++
				continue
			}
			x, err := strconv.ParseFloat(string(bytes.Trim([]byte(want), " \t")), 64)
			idx := slices.IndexFunc(r.Metrics, func(m ups.Metric) bool { return m.Name == k })
			if idx < 0 {
				v, known := ups.LookupVar(k)
				if known && len(bytes.Trim([]byte(want), " \t")) == 0 {
					continue // empty value of a known variable: absent
				}
				if err == nil && (known && (x < ups.Vars[v].Min || x > ups.Vars[v].Max) ||
					!known && math.Abs(x) > ups.AbsurdLimit) {
					continue // out of range: dropped
				}
				t.Fatalf("%s = %q missing from the reading", k, want)
			}
			if err != nil && !errors.Is(err, strconv.ErrRange) || x != r.Metrics[idx].Value {
				t.Fatalf("%s: metric %v, encoding/json %q", k, r.Metrics[idx].Value, want)
			}
			count++
		}
		n := len(r.Metrics) + len(r.Texts)
		if r.HasStatus {
			n++
		}
		if n != count {
			t.Fatalf("reading %d has %d variables, encoding/json %d", i, n, count)
		}
	}
}
