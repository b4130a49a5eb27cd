package payload

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upswatch/upswatch/ups"
)

const testSerial ups.Serial = "123456789012"

var received = time.Date(2025, 11, 24, 16, 0, 0, 0, time.UTC)

// view is what a test compares of a reading.
type view struct {
	Time      time.Time
	HasStatus bool
	Status    string
	Metrics   map[string]float64
	Texts     map[string]string
}

func viewOf(r *ups.Reading) view {
	v := view{Time: r.Time, HasStatus: r.HasStatus, Status: r.Status.Raw,
		Metrics: map[string]float64{}, Texts: map[string]string{}}
	for _, m := range r.Metrics {
		v.Metrics[m.Name] = m.Value
	}
	for _, t := range r.Texts {
		v.Texts[t.Name] = t.Value
	}
	return v
}

type nums = map[string]float64
type texts = map[string]string

func at(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    []view
	}{
		{
			name:    "contract example",
			payload: `{"ts":1764000000000,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":"87","battery.runtime":1490}`,
			want: []view{{Time: at(1764000000000), HasStatus: true, Status: "OB DISCHRG",
				Metrics: nums{"input.voltage": 0, "battery.charge": 87, "battery.runtime": 1490}, Texts: texts{}}},
		},
		{
			name: "numeric strings",
			payload: `{"battery.charge":" 87 ","battery.voltage":"008.1","ups.delay.start":"-5",` +
				`"ups.delay.shutdown":"+5","battery.runtime":"1e2","input.frequency":".5","output.voltage":"5.",` +
				`"ups.load":"27.40","x.big":"123456789012345678901234567890e-20","x.tiny":"1e-400"}`,
			want: []view{{Time: received, Metrics: nums{"battery.charge": 87, "battery.voltage": 8.1,
				"ups.delay.start": -5, "ups.delay.shutdown": 5, "battery.runtime": 100, "input.frequency": 0.5,
				"output.voltage": 5, "ups.load": 27.4, "x.big": 1234567890.1234567890, "x.tiny": 0}, Texts: texts{}}},
		},
		{
			name: "JSON numbers",
			payload: `{"input.voltage":230.5,"ups.load":-0,"battery.runtime":1E3,"ups.realpower":12.5e-1,` +
				`"x.int":999999999999,"x.neg":-1e12}`,
			want: []view{{Time: received, Metrics: nums{"input.voltage": 230.5, "ups.load": 0, "battery.runtime": 1000,
				"ups.realpower": 1.25, "x.int": 999999999999, "x.neg": -1e12}, Texts: texts{}}},
		},
		{
			name: "textual names keep numeric-looking values",
			payload: `{"ups.serial":"000123","ups.vendorid":"0665","ups.productid":"5161","ups.firmware":"2.1",` +
				`"ups.firmware.aux":"07","driver.parameter.pollinterval":"2","battery.mfr.date":"20240131",` +
				`"ups.id":7,"outlet.1.desc":"1","ups.test.result":"1","device.type":"2","ups.beeper.status":"0",` +
				`"driver.version":"2.8.0","ups.contacts":"00","ups.alarm":"3","ups.mfr":"1","ups.model":"1500",` +
				`"driver.parameter.port":"1","ups.date":"20240131","x.name":"1","x.version":"3"}`,
			want: []view{{Time: received, Metrics: nums{}, Texts: texts{"ups.serial": "000123", "ups.vendorid": "0665",
				"ups.productid": "5161", "ups.firmware": "2.1", "ups.firmware.aux": "07",
				"driver.parameter.pollinterval": "2", "battery.mfr.date": "20240131", "ups.id": "7",
				"outlet.1.desc": "1", "ups.test.result": "1", "device.type": "2", "ups.beeper.status": "0",
				"driver.version": "2.8.0", "ups.contacts": "00", "ups.alarm": "3", "ups.mfr": "1",
				"ups.model": "1500", "driver.parameter.port": "1", "ups.date": "20240131", "x.name": "1",
				"x.version": "3"}}},
		},
		{
			name:    "numeric ups.status stays a status",
			payload: `{"ups.status":"0"}`,
			want:    []view{{Time: received, HasStatus: true, Status: "0", Metrics: nums{}, Texts: texts{}}},
		},
		{
			name: "booleans, nulls, empty and non-numeric strings",
			payload: `{"x.on":true,"x.off":false,"battery.charge":null,"x.null":null,"battery.voltage":"",` +
				`"x.empty":"","battery.runtime":"1:57","ups.status":"","x.word":"Café ☕","x.hex":"0x1F","x.us":"1_000"}`,
			want: []view{{Time: received, HasStatus: true, Status: "", Metrics: nums{}, Texts: texts{
				"x.on": "true", "x.off": "false", "x.empty": "", "battery.runtime": "1:57",
				"x.word": "Café ☕", "x.hex": "0x1F", "x.us": "1_000"}}},
		},
		{
			name:    "string escapes in keys and values",
			payload: `{"battery\u002echarge":"8\u0037","ups.status":"OB\u0020DISCHRG","x.t":"a\"b\\c\/d\n\t\u00e9\ud83d\ude00","x.lone":"\ud800x"}`,
			want: []view{{Time: received, HasStatus: true, Status: "OB DISCHRG",
				Metrics: nums{"battery.charge": 87},
				Texts:   texts{"x.t": "a\"b\\c/d\n\té😀", "x.lone": "\uFFFDx"}}},
		},
		{
			name:    "white space, byte order mark and names NUT uses",
			payload: "\ufeff \r\n\t{ \"output.L1-N.voltage\" : 230 , \"ups.debug.V\":\"1\",\"x_y\":1 }\n ",
			want: []view{{Time: received, Metrics: nums{"output.L1-N.voltage": 230, "ups.debug.V": 1, "x_y": 1},
				Texts: texts{}}},
		},
		{
			name:    "ts as unix ms string",
			payload: `{"ts":"1764000000123","ups.load":10}`,
			want:    []view{{Time: at(1764000000123), Metrics: nums{"ups.load": 10}, Texts: texts{}}},
		},
		{
			name:    "ts with fractional ms",
			payload: `{"ts":1764000000000.5,"ups.load":10}`,
			want:    []view{{Time: at(1764000000000).Add(500 * time.Microsecond), Metrics: nums{"ups.load": 10}, Texts: texts{}}},
		},
		{
			name:    "ts RFC 3339 with offset becomes UTC",
			payload: `{"ts":"2025-11-24T18:30:00+02:00","ups.load":10}`,
			want:    []view{{Time: time.Date(2025, 11, 24, 16, 30, 0, 0, time.UTC), Metrics: nums{"ups.load": 10}, Texts: texts{}}},
		},
		{
			name:    "ts RFC 3339 nano",
			payload: `{"ts":"2025-11-24T15:59:59.123456789Z","ups.load":10}`,
			want:    []view{{Time: time.Date(2025, 11, 24, 15, 59, 59, 123456789, time.UTC), Metrics: nums{"ups.load": 10}, Texts: texts{}}},
		},
		{
			name:    "ts null means receipt",
			payload: `{"ts":null,"ups.load":10}`,
			want:    []view{{Time: received, Metrics: nums{"ups.load": 10}, Texts: texts{}}},
		},
		{
			name:    "ts at the future limit and at 2000-01-01",
			payload: `[{"ts":"2025-11-24T17:00:00Z","ups.load":1},{"ts":946684800000,"ups.load":2}]`,
			want: []view{
				{Time: received.Add(time.Hour), Metrics: nums{"ups.load": 1}, Texts: texts{}},
				{Time: at(946684800000), Metrics: nums{"ups.load": 2}, Texts: texts{}},
			},
		},
		{
			name: "array oldest first, ts optional per reading",
			payload: `[ {"ts":1764000000000,"ups.status":"OB DISCHRG","battery.charge":90},` +
				`{"ts":1764000001000,"ups.status":"OB DISCHRG","battery.charge":89}, {"ups.status":"OL CHRG"} ]`,
			want: []view{
				{Time: at(1764000000000), HasStatus: true, Status: "OB DISCHRG", Metrics: nums{"battery.charge": 90}, Texts: texts{}},
				{Time: at(1764000001000), HasStatus: true, Status: "OB DISCHRG", Metrics: nums{"battery.charge": 89}, Texts: texts{}},
				{Time: received, HasStatus: true, Status: "OL CHRG", Metrics: nums{}, Texts: texts{}},
			},
		},
		{
			name: "upsc with comments, blank lines, CRLF and empty values",
			payload: "# DEVICE:URL:REPORT: somewhere\r\n\r\nbattery.charge: 100\r\n" +
				"ups.status: OL OB\t#BAD: contradictory\n" +
				"ups.load: 150.00\t\t\t#BAD: should be 15\n" +
				"device.mfr:\n" +
				"device.serial:\t#COMMENT: masked by user\n" +
				"ups.id: Rack#3\n" +
				"  input.voltage:   230.5  \n" +
				"ups.vendorid: 0665\n" +
				"driver.parameter.pollinterval: 2\n" +
				"battery.runtime: 1:57\n" +
				"battery.voltage:\n" +
				"ups.alarm: Replace battery! # see manual\n" +
				"ts: 5\n" +
				"# trailing comment",
			want: []view{{Time: received, HasStatus: true, Status: "OL OB",
				Metrics: nums{"battery.charge": 100, "ups.load": 150, "input.voltage": 230.5, "ts": 5},
				Texts: texts{"device.mfr": "", "device.serial": "", "ups.id": "Rack#3", "ups.vendorid": "0665",
					"driver.parameter.pollinterval": "2", "battery.runtime": "1:57", "ups.alarm": "Replace battery!"}}},
		},
		{
			name:    "upsc empty status",
			payload: "ups.status: \t#BAD: always empty\nups.load: 3",
			want:    []view{{Time: received, HasStatus: true, Status: "", Metrics: nums{"ups.load": 3}, Texts: texts{}}},
		},
	}
	d := New(Limits{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := d.Decode(testSerial, []byte(tc.payload), received, nil)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			got := make([]view, len(rs))
			for i := range rs {
				got[i] = viewOf(&rs[i])
				if rs[i].Serial != testSerial {
					t.Errorf("reading %d: Serial = %q", i, rs[i].Serial)
				}
				if rs[i].Time.Location() != time.UTC {
					t.Errorf("reading %d: Time %v not in UTC", i, rs[i].Time)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name    string
		lim     Limits
		payload string
		reason  Reason
		index   int
		msg     string // exact Error() when set
	}{
		// malformed
		{name: "plain text", payload: "hello world", reason: ReasonMalformed, index: -1,
			msg: `line 1: "hello world" is not a "name: value" pair`},
		{name: "upsc tab after colon", payload: "ups.load:\t5", reason: ReasonMalformed, index: -1},
		{name: "upsc bad name", payload: "ups load: 5", reason: ReasonMalformed, index: -1},
		{name: "upsc control character", payload: "ups.alarm: a\x00b", reason: ReasonMalformed, index: -1},
		{name: "upsc invalid UTF-8", payload: "ups.alarm: \xff", reason: ReasonMalformed, index: -1},
		{name: "upsc duplicate", payload: "ups.load: 5\nups.load: 6", reason: ReasonMalformed, index: -1,
			msg: `line 2: duplicate variable "ups.load"`},
		{name: "unterminated object", payload: `{"ups.load":1`, reason: ReasonMalformed, index: -1},
		{name: "unterminated string", payload: `{"ups.load":"1`, reason: ReasonMalformed, index: -1},
		{name: "trailing data", payload: `{"ups.load":1}x`, reason: ReasonMalformed, index: -1},
		{name: "two objects", payload: `{"ups.load":1}{"ups.load":2}`, reason: ReasonMalformed, index: -1},
		{name: "nested object", payload: `{"ups.load":{"v":1}}`, reason: ReasonMalformed, index: -1,
			msg: `"ups.load" holds a nested object or array; values must be numbers, strings, booleans or null`},
		{name: "nested array", payload: `[{"ups.load":1},{"ups.load":[1]}]`, reason: ReasonMalformed, index: 1},
		{name: "array of numbers", payload: `[1,2]`, reason: ReasonMalformed, index: 0},
		{name: "array trailing comma", payload: `[{"ups.load":1},]`, reason: ReasonMalformed, index: 1},
		{name: "array missing comma", payload: `[{"ups.load":1}{"ups.load":2}]`, reason: ReasonMalformed, index: 0},
		{name: "object trailing comma", payload: `{"ups.load":1,}`, reason: ReasonMalformed, index: -1},
		{name: "leading zero", payload: `{"ups.load":01}`, reason: ReasonMalformed, index: -1},
		{name: "bare dot", payload: `{"ups.load":1.}`, reason: ReasonMalformed, index: -1},
		{name: "plus sign", payload: `{"ups.load":+1}`, reason: ReasonMalformed, index: -1},
		{name: "lone minus", payload: `{"ups.load":-}`, reason: ReasonMalformed, index: -1},
		{name: "bad exponent", payload: `{"ups.load":1e}`, reason: ReasonMalformed, index: -1},
		{name: "bad literal", payload: `{"ups.load":tru}`, reason: ReasonMalformed, index: -1},
		{name: "NaN literal", payload: `{"ups.load":NaN}`, reason: ReasonMalformed, index: -1},
		{name: "unquoted key", payload: `{ups.load:1}`, reason: ReasonMalformed, index: -1},
		{name: "missing colon", payload: `{"ups.load" 1}`, reason: ReasonMalformed, index: -1},
		{name: "space in name", payload: `{"ups load":1}`, reason: ReasonMalformed, index: -1,
			msg: `invalid variable name "ups load" (want 1 to 128 of A-Z a-z 0-9 . _ -)`},
		{name: "empty name", payload: `{"":1}`, reason: ReasonMalformed, index: -1},
		{name: "long name", payload: `{"` + strings.Repeat("a", 129) + `":1}`, reason: ReasonMalformed, index: -1},
		{name: "duplicate known name", payload: `{"ups.load":1,"ups.load":2}`, reason: ReasonMalformed, index: -1,
			msg: `duplicate variable "ups.load"`},
		{name: "duplicate with null", payload: `{"ups.load":null,"ups.load":2}`, reason: ReasonMalformed, index: -1},
		{name: "duplicate other name", payload: `{"x.a":1,"x.b":"t","x.a":"u"}`, reason: ReasonMalformed, index: -1},
		{name: "duplicate ts", payload: `{"ts":946684800000,"ts":946684800000,"ups.load":1}`, reason: ReasonMalformed, index: -1},
		{name: "raw control character", payload: "{\"ups.alarm\":\"a\x01\"}", reason: ReasonMalformed, index: -1},
		{name: "invalid UTF-8 in string", payload: "{\"ups.alarm\":\"\xc3\x28\"}", reason: ReasonMalformed, index: -1},
		{name: "bad escape", payload: `{"ups.alarm":"\x41"}`, reason: ReasonMalformed, index: -1},
		{name: "bad unicode escape", payload: `{"ups.alarm":"\u12G4"}`, reason: ReasonMalformed, index: -1},

		// nan_inf
		{name: "NaN string", payload: `{"ups.load":"NaN"}`, reason: ReasonNaNInf, index: -1,
			msg: `ups.load = "NaN" is not a finite number`},
		{name: "nan string unknown var", payload: `{"x.y":"nan"}`, reason: ReasonNaNInf, index: -1},
		{name: "+Inf string", payload: `{"ups.load":"+Inf"}`, reason: ReasonNaNInf, index: -1},
		{name: "-Infinity string", payload: `[{"ups.load":1},{"x.y":"-Infinity"}]`, reason: ReasonNaNInf, index: 1},
		{name: "overflowing number", payload: `{"x.y":1e400}`, reason: ReasonNaNInf, index: -1,
			msg: `x.y = 1e400 overflows a 64-bit float`},
		{name: "overflowing numeric string", payload: `{"x.y":"-2e308"}`, reason: ReasonNaNInf, index: -1},
		{name: "upsc inf", payload: "battery.charge: inf", reason: ReasonNaNInf, index: -1,
			msg: `line 1: battery.charge = "inf" is not a finite number`},

		// out_of_range: only when every variable of a reading was dropped
		{name: "charge above max", payload: `[{"ups.load":1},{"ups.load":1},{"ups.load":1},{"battery.charge":250}]`,
			reason: ReasonOutOfRange, index: 3, msg: `reading 3: battery.charge = 250 is out of range [0, 200]`},
		{name: "negative voltage", payload: `{"input.voltage":"-1"}`, reason: ReasonOutOfRange, index: -1},
		{name: "temperature below min", payload: `{"ups.temperature":-60.5}`, reason: ReasonOutOfRange, index: -1},
		{name: "unknown absurd", payload: `{"x.y":1.5e12}`, reason: ReasonOutOfRange, index: -1,
			msg: `x.y = 1.5e+12 is beyond the limit of ±1e+12 for any variable`},
		{name: "unknown absurd negative", payload: `{"x.y":"-2e12"}`, reason: ReasonOutOfRange, index: -1},
		{name: "upsc out of range", payload: "ups.load: 1500", reason: ReasonOutOfRange, index: -1},
		{name: "all values out of range, first reported", payload: `{"ups.load":1500,"battery.charge":-1,"x":null}`,
			reason: ReasonOutOfRange, index: -1, msg: `ups.load = 1500 is out of range [0, 1000]`},

		// oversized
		{name: "too many bytes", lim: Limits{MaxBytes: 16}, payload: `{"ups.load":12345}`, reason: ReasonOversized, index: -1,
			msg: `payload of 18 bytes exceeds the limit of 16`},
		{name: "too many readings", lim: Limits{MaxReadings: 2}, payload: `[{"ups.load":1},{"ups.load":2},{"ups.load":3}]`,
			reason: ReasonOversized, index: -1, msg: `more than 2 readings`},
		{name: "too many fields", lim: Limits{MaxFields: 3}, payload: `[{"ups.load":1},{"ts":null,"a":1,"b":null,"c":1}]`,
			reason: ReasonOversized, index: 1, msg: `reading 1: more than 3 fields`},
		{name: "too many upsc lines", lim: Limits{MaxFields: 2}, payload: "a: 1\n#c\nb: 2\nc: 3", reason: ReasonOversized, index: -1},

		// bad_timestamp
		{name: "ts words", payload: `{"ts":"yesterday","ups.load":1}`, reason: ReasonBadTimestamp, index: -1,
			msg: `ts "yesterday" is neither unix milliseconds nor RFC 3339`},
		{name: "ts seconds", payload: `{"ts":1764000000,"ups.load":1}`, reason: ReasonBadTimestamp, index: -1,
			msg: `ts "1764000000" is before 2000-01-01; it looks like unix seconds, but ts must be unix milliseconds`},
		{name: "ts zero", payload: `{"ts":0,"ups.load":1}`, reason: ReasonBadTimestamp, index: -1},
		{name: "ts negative", payload: `{"ts":-1,"ups.load":1}`, reason: ReasonBadTimestamp, index: -1},
		{name: "ts just before 2000", payload: `{"ts":946684799999,"ups.load":1}`, reason: ReasonBadTimestamp, index: -1},
		{name: "ts RFC 3339 before 2000", payload: `{"ts":"1999-12-31T23:59:59Z","ups.load":1}`, reason: ReasonBadTimestamp, index: -1,
			msg: `ts 1999-12-31T23:59:59Z is before 2000-01-01`},
		{name: "ts too far ahead", payload: `[{"ups.load":1},{"ts":"2025-11-24T17:00:00.001Z","ups.load":1}]`,
			reason: ReasonBadTimestamp, index: 1,
			msg: `reading 1: ts 2025-11-24T17:00:00.001Z is more than 1h0m0s ahead of receipt at 2025-11-24T16:00:00Z`},
		{name: "ts ms too far ahead", payload: `{"ts":1764003600001,"ups.load":1}`, reason: ReasonBadTimestamp, index: -1},
		{name: "ts huge", payload: `{"ts":1e300,"ups.load":1}`, reason: ReasonBadTimestamp, index: -1},
		{name: "ts overflow", payload: `{"ts":1e400,"ups.load":1}`, reason: ReasonBadTimestamp, index: -1},
		{name: "ts bool", payload: `{"ts":true,"ups.load":1}`, reason: ReasonBadTimestamp, index: -1},
		{name: "ts bad month", payload: `{"ts":"2025-13-01T00:00:00Z","ups.load":1}`, reason: ReasonBadTimestamp, index: -1},
		{name: "ts date only", payload: `{"ts":"2025-11-24","ups.load":1}`, reason: ReasonBadTimestamp, index: -1},
		{name: "ts limit override", lim: Limits{MaxFuture: time.Minute}, payload: `{"ts":"2025-11-24T16:01:01Z","ups.load":1}`,
			reason: ReasonBadTimestamp, index: -1},

		// empty
		{name: "nothing", payload: "", reason: ReasonEmpty, index: -1, msg: "payload is empty"},
		{name: "white space", payload: " \r\n\t", reason: ReasonEmpty, index: -1},
		{name: "empty object", payload: `{}`, reason: ReasonEmpty, index: -1, msg: "reading has no variables"},
		{name: "empty array", payload: `[ ]`, reason: ReasonEmpty, index: -1, msg: "array holds no readings"},
		{name: "only ts", payload: `{"ts":1764000000000}`, reason: ReasonEmpty, index: -1},
		{name: "only nulls", payload: `{"ups.load":null,"x":null}`, reason: ReasonEmpty, index: -1},
		{name: "only empty known", payload: `{"battery.charge":""}`, reason: ReasonEmpty, index: -1},
		{name: "empty reading in array", payload: `[{"ups.load":1},{}]`, reason: ReasonEmpty, index: 1,
			msg: "reading 1: reading has no variables"},
		{name: "upsc only comments", payload: "# DEVICE:EOC\n\n# nothing\n", reason: ReasonEmpty, index: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := New(tc.lim)
			prior := []ups.Reading{{Serial: "999999999999"}}
			rs, err := d.Decode(testSerial, []byte(tc.payload), received, prior)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode = %d readings, err %v; want *Error", len(rs)-1, err)
			}
			if e.Reason != tc.reason || e.Index != tc.index {
				t.Errorf("Reason, Index = %q, %d; want %q, %d (%v)", e.Reason, e.Index, tc.reason, tc.index, err)
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("Error() = %q\nwant      %q", err.Error(), tc.msg)
			}
			if len(rs) != 1 || rs[0].Serial != "999999999999" {
				t.Errorf("dst changed on error: %d readings", len(rs))
			}
		})
	}
}

// TestDecodeDropsOutOfRange checks that an out-of-range value is dropped
// from its reading and counted, while the rest of the reading is kept.
func TestDecodeDropsOutOfRange(t *testing.T) {
	d := New(Limits{})
	tests := []struct {
		payload     string
		want        []view
		wantDropped uint64 // Dropped() after this payload
	}{
		{
			payload: `{"ups.status":"OB DISCHRG","battery.temperature":302,"battery.charge":"1000","input.voltage":"0","x.y":-2e12}`,
			want: []view{{Time: received, HasStatus: true, Status: "OB DISCHRG",
				Metrics: nums{"input.voltage": 0}, Texts: texts{}}},
			wantDropped: 3,
		},
		{
			payload: "ups.status: OL\ninput.frequency: 5990\nups.load: 2.3e256\nbattery.charge: 100\n",
			want: []view{{Time: received, HasStatus: true, Status: "OL",
				Metrics: nums{"battery.charge": 100}, Texts: texts{}}},
			wantDropped: 5,
		},
		{
			payload: `[{"battery.charge":255,"ups.alarm":"x"},{"ups.load":1}]`,
			want: []view{
				{Time: received, Metrics: nums{}, Texts: texts{"ups.alarm": "x"}},
				{Time: received, Metrics: nums{"ups.load": 1}, Texts: texts{}},
			},
			wantDropped: 6,
		},
	}
	for _, tc := range tests {
		rs, err := d.Decode(testSerial, []byte(tc.payload), received, nil)
		if err != nil {
			t.Fatalf("Decode(%s): %v", tc.payload, err)
		}
		var got []view
		for i := range rs {
			got = append(got, viewOf(&rs[i]))
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Decode(%s) =\n%+v\nwant\n%+v", tc.payload, got, tc.want)
		}
		if n := d.Dropped(); n != tc.wantDropped {
			t.Errorf("after %s: Dropped() = %d, want %d", tc.payload, n, tc.wantDropped)
		}
	}
	// A rejected payload's values are not counted: it is counted once,
	// by its Reason.
	if _, err := d.Decode(testSerial, []byte(`{"ups.load":5000,"x":"NaN"}`), received, nil); err == nil {
		t.Fatal("payload with NaN accepted")
	}
	if n := d.Dropped(); n != 6 {
		t.Errorf("Dropped() = %d after a rejected payload, want 6", n)
	}
}

func TestErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		err  Error
		want string
	}{
		{Error{ReasonOutOfRange, 3, "battery.charge = 250 is out of range [0, 200]"}, "reading 3: battery.charge = 250 is out of range [0, 200]"},
		{Error{ReasonEmpty, -1, "payload is empty"}, "payload is empty"},
		{Error{ReasonMalformed, 0, "x"}, "reading 0: x"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestReasonsDistinct(t *testing.T) {
	seen := map[Reason]bool{}
	for _, r := range Reasons() {
		if seen[r] || r == "" || strings.ContainsAny(string(r), " -.") {
			t.Errorf("reason %q duplicated or not a clean label value", r)
		}
		seen[r] = true
	}
	if len(seen) != 6 {
		t.Errorf("Reasons() has %d entries, want 6", len(seen))
	}
}

func TestLimitsDefaults(t *testing.T) {
	got := New(Limits{MaxFields: -1, MaxReadings: 7}).Limits()
	want := Limits{MaxBytes: 1 << 20, MaxReadings: 7, MaxFields: 1024, MaxFuture: time.Hour}
	if got != want {
		t.Errorf("Limits() = %+v, want %+v", got, want)
	}
}

// TestDecodeAppends checks dst is appended to, and that readings of one
// payload do not share spare capacity: appending to one reading's
// variables must not overwrite the next reading's.
func TestDecodeAppends(t *testing.T) {
	d := New(Limits{})
	prior := make([]ups.Reading, 1, 8)
	prior[0].Serial = "999999999999"
	rs, err := d.Decode(testSerial, []byte(`[{"ups.load":1,"ups.alarm":"a"},{"ups.load":2,"ups.alarm":"b"}]`), received, prior)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 || rs[0].Serial != "999999999999" || rs[1].Serial != testSerial {
		t.Fatalf("got %d readings: %+v", len(rs), rs)
	}
	rs[1].SetNum("x.new", 5)
	rs[1].SetText("x.new", "t")
	if v, _ := rs[2].Num(ups.UPSLoad); v != 2 || rs[2].Metrics[0].Name != "ups.load" || rs[2].Texts[0].Value != "b" {
		t.Errorf("appending to reading 1 changed reading 2: %+v", rs[2])
	}
	if v, ok := rs[1].Num(ups.UPSLoad); !ok || v != 1 {
		t.Errorf("reading 1 ups.load = %v, %v; want 1 (index not rebuilt?)", v, ok)
	}
}

// TestDecodeConcurrent shares one Decoder between goroutines (run with
// -race): pooled scratch state must never leak between calls.
func TestDecodeConcurrent(t *testing.T) {
	d := New(Limits{})
	payloads := []string{
		`{"ups.status":"OL","ups.load":1,"x.a":"one"}`,
		`[{"ups.status":"OB","ups.load":2,"x.b":"two"},{"ups.load":3,"x.c":"three"}]`,
		"ups.status: OL CHRG\nups.load: 4\nx.d: four\n",
		`{"ups.load":1e13}`,
	}
	want := make([][]view, len(payloads))
	for i, p := range payloads {
		rs, _ := d.Decode(testSerial, []byte(p), received, nil)
		for j := range rs {
			want[i] = append(want[i], viewOf(&rs[j]))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for n := range 300 {
				i := (g + n) % len(payloads)
				rs, _ := d.Decode(testSerial, []byte(payloads[i]), received, nil)
				var got []view
				for j := range rs {
					got = append(got, viewOf(&rs[j]))
				}
				if !reflect.DeepEqual(got, want[i]) {
					select {
					case errs <- fmt.Sprintf("payload %d: got %+v, want %+v", i, got, want[i]):
					default:
					}
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestParseFloatMatchesStrconv(t *testing.T) {
	for _, s := range []string{"0", "-0", "1", "27.40", "008.1", "230.5", "0.1", "0.3", "123456789012345",
		"1234567890123456", "99999999999999999999", "1.7976931348623157e308", "4.9e-324", "5e-324",
		".5", "5.", "+5", "-12.75", "0.000000000000000000001", "0.0000000000000000000000001", "1E3",
		"3.14159265358979323846", "100000000000000000000000", "9007199254740993"} {
		got, err := parseFloat([]byte(s))
		if err != nil {
			t.Errorf("parseFloat(%q): %v", s, err)
			continue
		}
		var want float64
		if _, err := fmt.Sscan(s, &want); err != nil {
			t.Fatalf("Sscan(%q): %v", s, err)
		}
		if math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("parseFloat(%q) = %v, want %v", s, got, want)
		}
	}
}
