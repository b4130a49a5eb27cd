package influx

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	http2 "github.com/influxdata/influxdb-client-go/v2/api/http"

	"github.com/upswatch/upswatch/ups"
)

func jsonDecode(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}

func TestEncoder(t *testing.T) {
	at := time.UnixMilli(1764000000123)
	for _, tc := range []struct {
		name    string
		r       func() ups.Reading
		want    string
		dropped map[string]int
	}{
		{
			name: "numbers, status and texts",
			r: func() ups.Reading {
				r := ups.Reading{Serial: "123456789012", Time: at}
				r.SetNum("battery.charge", 87)
				r.SetNum("input.voltage", 229.5)
				r.SetNum("battery.runtime", 1e7)
				r.SetText("ups.status", "OB DISCHRG")
				r.SetText("ups.alarm", `say "hi" \ bye`)
				return r
			},
			want: "ups_reading,serial=123456789012 battery.charge=87,input.voltage=229.5,battery.runtime=1e+07,status=\"OB DISCHRG\" 1764000000123\n" +
				"ups_text,serial=123456789012 ups.alarm=\"say \\\"hi\\\" \\\\ bye\" 1764000000123\n",
		},
		{
			name: "keys escaped",
			r: func() ups.Reading {
				r := ups.Reading{Serial: "123456789012", Time: at}
				r.SetNum("odd name,x=y", 1)
				return r
			},
			want: `ups_reading,serial=123456789012 odd\ name\,x\=y=1 1764000000123` + "\n",
		},
		{
			name: "empty status is still a status",
			r: func() ups.Reading {
				r := ups.Reading{Serial: "123456789012", Time: at}
				r.SetText("ups.status", "")
				return r
			},
			want: `ups_reading,serial=123456789012 status="" 1764000000123` + "\n",
		},
		{
			name: "presence",
			r: func() ups.Reading {
				return ups.Reading{Serial: "1234567890123456", Time: at, Presence: ups.PresenceOnline}
			},
			want: `ups_presence,serial=1234567890123456 state="online" 1764000000123` + "\n",
		},
		{
			name: "bad values dropped, the rest kept",
			r: func() ups.Reading {
				r := ups.Reading{Serial: "123456789012", Time: at}
				r.SetNum("battery.charge", math.NaN())
				r.SetNum("input.voltage", math.Inf(1))
				r.SetNum("a\nb", 1)
				r.SetNum(`back\`, 1)
				r.SetNum("ups.load", 10)
				r.SetText("", "x")
				return r
			},
			want:    `ups_reading,serial=123456789012 ups.load=10 1764000000123` + "\n",
			dropped: map[string]int{reasonNonFinite: 2, reasonBadName: 3},
		},
		{
			name: "nothing left: no line",
			r: func() ups.Reading {
				r := ups.Reading{Serial: "123456789012", Time: at}
				r.SetNum("battery.charge", math.NaN())
				return r
			},
			dropped: map[string]int{reasonNonFinite: 1},
		},
		{
			name:    "bad serial",
			r:       func() ups.Reading { return ups.Reading{Serial: "12345", Time: at} },
			dropped: map[string]int{reasonBadSerial: 1},
		},
		{
			name:    "zero time",
			r:       func() ups.Reading { return ups.Reading{Serial: "123456789012"} },
			dropped: map[string]int{reasonBadTime: 1},
		},
		{
			name:    "unknown presence",
			r:       func() ups.Reading { return ups.Reading{Serial: "123456789012", Time: at, Presence: 9} },
			dropped: map[string]int{reasonOther: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dropped := map[string]int{}
			e := &encoder{drop: func(reason string, n int) { dropped[reason] += n }}
			r := tc.r()
			e.appendReading(&r, len(r.Texts) > 0)
			if got := string(e.buf); got != tc.want {
				t.Errorf("encoded\n%q\nwant\n%q", got, tc.want)
			}
			if want := strings.Count(tc.want, "\n"); e.points() != want {
				t.Errorf("points() = %d, want %d", e.points(), want)
			}
			if fmt.Sprint(dropped) != fmt.Sprint(orEmpty(tc.dropped)) {
				t.Errorf("dropped %v, want %v", dropped, tc.dropped)
			}
		})
	}
}

func orEmpty(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}

func TestClassify(t *testing.T) {
	httpErr := func(code int, msg string) error {
		return fmt.Errorf("wrapped: %w", &http2.Error{StatusCode: code, Code: "x", Message: msg})
	}
	for _, tc := range []struct {
		name string
		err  error
		want classified
	}{
		{"network", http2.NewError(errors.New("dial tcp: connection refused")), classified{kind: kindUnavailable}},
		{"plain error", errors.New("context deadline exceeded"), classified{kind: kindUnavailable}},
		{"503", httpErr(503, "unavailable"), classified{kind: kindUnavailable, status: 503}},
		{"429", httpErr(429, "slow down"), classified{kind: kindUnavailable, status: 429}},
		{"401", httpErr(401, "authorization failed"), classified{kind: kindConfig, status: 401}},
		{"403", httpErr(403, "forbidden"), classified{kind: kindConfig, status: 403}},
		{"404", httpErr(404, `database not found: "x"`), classified{kind: kindConfig, status: 404}},
		{"413", httpErr(413, "too large"), classified{kind: kindRejected, status: 413, reason: reasonTooLarge}},
		{"1.x type conflict", httpErr(400, `partial write: field type conflict: input field "ups.load" on measurement "ups_reading" is type float, already exists as type string dropped=3`),
			classified{kind: kindRejected, status: 400, partial: true, dropped: 3, reason: reasonTypeConflict}},
		{"retention", httpErr(400, `partial write: points beyond retention policy dropped=2`),
			classified{kind: kindRejected, status: 400, partial: true, dropped: 2, reason: reasonRetention}},
		{"1.x parse, partial", httpErr(400, `partial write: unable to parse 'x': invalid field format dropped=0`),
			classified{kind: kindRejected, status: 400, partial: true, reason: reasonParse}},
		{"2.x parse, whole", httpErr(400, `unable to parse 'x': missing fields`),
			classified{kind: kindRejected, status: 400, reason: reasonParse}},
		{"2.x 422", httpErr(422, `failure writing points to database: partial write: field type conflict dropped=1`),
			classified{kind: kindRejected, status: 422, partial: true, dropped: 1, reason: reasonTypeConflict}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err)
			got.message = ""
			if got != tc.want {
				t.Errorf("classify = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestFluxString(t *testing.T) {
	for in, want := range map[string]string{
		"upswatch/autogen": `"upswatch/autogen"`,
		`a"b\c`:            `"a\"b\\c"`,
		"${x}":             `"\${x}"`,
		"a\nb":             `"a\nb"`,
	} {
		if got := fluxString(in); got != want {
			t.Errorf("fluxString(%q) = %s, want %s", in, got, want)
		}
	}
}
