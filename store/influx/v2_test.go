package influx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// v2fake is a fake of the InfluxDB 2.x HTTP API, the endpoints the store
// uses: /ping, /api/v2/write, /api/v2/query and /api/v2/delete. It checks
// every request as 2.x would (the token, the org and bucket by name, the
// write precision, the bodies' formats), records what it was asked, and
// answers queries from a script. A wrong token, org or bucket is answered
// as 2.x does (401, 404); a request malformed for 2.x fails the test.
type v2fake struct {
	t                  *testing.T
	srv                *httptest.Server
	token, org, bucket string

	mu      sync.Mutex
	writes  [][]string // line protocol, one slice per request
	queries []string   // Flux scripts
	deletes []v2delete
	// reject, when set, marks the lines the server drops as a field type
	// conflict (422, a partial write: the other lines are stored).
	reject func(line string) bool
	// fail, when set, is the status every write answers (with a 2.x JSON
	// error body).
	fail int
	// answer gives the annotated CSV a Flux script is answered with.
	answer func(flux string) string
}

type v2delete struct {
	Org, Bucket string
	Start, Stop time.Time
	Predicate   string
}

func newV2Fake(t *testing.T) *v2fake {
	f := &v2fake{t: t, token: "v2-secret-token", org: "facilities", bucket: "upswatch"}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// bad records a request 2.x would refuse and answers it as 2.x does.
func (f *v2fake) bad(w http.ResponseWriter, status int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	f.t.Errorf("influx v2 fake: %s", msg)
	v2error(w, status, "invalid", msg)
}

func v2error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

// lineRE is one line of the store's line protocol at millisecond
// precision: measurement, the serial tag, fields, a 13-digit timestamp.
var lineRE = regexp.MustCompile(`^(ups_reading|ups_text|ups_presence),serial=(\d{12}|\d{16}) \S.* \d{13}$`)

func (f *v2fake) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ping" {
		w.Header().Set("X-Influxdb-Version", "v2.7.11")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if got := r.Header.Get("Authorization"); got != "Token "+f.token {
		v2error(w, http.StatusUnauthorized, "unauthorized", "unauthorized access")
		return
	}
	q := r.URL.Query()
	if r.Method != http.MethodPost {
		f.bad(w, http.StatusMethodNotAllowed, "%s %s", r.Method, r.URL.Path)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		f.bad(w, http.StatusBadRequest, "read body: %v", err)
		return
	}
	switch r.URL.Path {
	case "/api/v2/write":
		f.write(w, q.Get("org"), q.Get("bucket"), q.Get("precision"), r.Header.Get("Content-Encoding"), string(body))
	case "/api/v2/query":
		f.query(w, q.Get("org"), r.Header.Get("Content-Type"), body)
	case "/api/v2/delete":
		f.delete(w, q.Get("org"), q.Get("bucket"), body)
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "404 page not found")
	}
}

func (f *v2fake) write(w http.ResponseWriter, org, bucket, precision, encoding, body string) {
	switch {
	case org != f.org || bucket != f.bucket:
		v2error(w, http.StatusNotFound, "not found", fmt.Sprintf("bucket %q not found", bucket))
		return
	case precision != "ms":
		f.bad(w, http.StatusBadRequest, "write precision %q, want ms", precision)
		return
	case encoding != "":
		f.bad(w, http.StatusBadRequest, "write content encoding %q", encoding)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != 0 {
		v2error(w, f.fail, "internal error", "scripted failure")
		return
	}
	var kept []string
	dropped := 0
	for line := range strings.SplitSeq(strings.TrimSuffix(body, "\n"), "\n") {
		if !lineRE.MatchString(line) {
			f.bad(w, http.StatusBadRequest, "unable to parse %q", line)
			return
		}
		if f.reject != nil && f.reject(line) {
			dropped++
			continue
		}
		kept = append(kept, line)
	}
	f.writes = append(f.writes, kept)
	if dropped > 0 {
		v2error(w, http.StatusUnprocessableEntity, "unprocessable entity",
			fmt.Sprintf("failure writing points to database: partial write: field type conflict: input field \"bad\" on measurement \"ups_reading\" is type float, already exists as type string dropped=%d", dropped))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *v2fake) query(w http.ResponseWriter, org, contentType string, body []byte) {
	var req struct {
		Query string `json:"query"`
		Type  string `json:"type"`
	}
	switch {
	case org != f.org:
		v2error(w, http.StatusNotFound, "not found", fmt.Sprintf("organization name %q not found", org))
		return
	case !strings.HasPrefix(contentType, "application/json"):
		f.bad(w, http.StatusBadRequest, "query content type %q", contentType)
		return
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Query == "" || (req.Type != "" && req.Type != "flux") {
		f.bad(w, http.StatusBadRequest, "query body %s (%v)", body, err)
		return
	}
	if want := "from(bucket: " + fluxString(f.bucket) + ")"; !strings.Contains(req.Query, want) {
		f.bad(w, http.StatusNotFound, "query without %s:\n%s", want, req.Query)
		return
	}
	f.mu.Lock()
	f.queries = append(f.queries, req.Query)
	answer := f.answer
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	if answer != nil {
		_, _ = io.WriteString(w, answer(req.Query))
	}
}

func (f *v2fake) delete(w http.ResponseWriter, org, bucket string, body []byte) {
	var req struct {
		Start     time.Time `json:"start"`
		Stop      time.Time `json:"stop"`
		Predicate string    `json:"predicate"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Start.IsZero() || req.Stop.IsZero() || !req.Stop.After(req.Start) {
		f.bad(w, http.StatusBadRequest, "delete body %s (%v)", body, err)
		return
	}
	if org != f.org || bucket != f.bucket {
		v2error(w, http.StatusNotFound, "not found", fmt.Sprintf("bucket %q not found", bucket))
		return
	}
	f.mu.Lock()
	f.deletes = append(f.deletes, v2delete{org, bucket, req.Start, req.Stop, req.Predicate})
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (f *v2fake) lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, w := range f.writes {
		out = append(out, w...)
	}
	return out
}

func (f *v2fake) open(t *testing.T, mod func(*Config)) (*Store, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{URL: f.srv.URL, Token: f.token, Org: f.org, Bucket: f.bucket, Timeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler), Registerer: reg}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, reg
}

// csvTable is one table of Flux's annotated CSV: the result name, the
// _value's type, and rows of _start,_stop,_time,_value,_field,_measurement.
func csvTable(result, valueType, serial string, rows ...[6]string) string {
	var b strings.Builder
	b.WriteString("#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339," + valueType + ",string,string,string\n")
	b.WriteString("#group,false,false,true,true,false,false,true,true,true\n")
	b.WriteString("#default," + result + ",,,,,,,,\n")
	b.WriteString(",result,table,_start,_stop,_time,_value,_field,_measurement,serial\n")
	for _, r := range rows {
		b.WriteString(",,0," + strings.Join(r[:], ",") + "," + serial + "\n")
	}
	b.WriteString("\n")
	return b.String()
}

func TestV2Ping(t *testing.T) {
	f := newV2Fake(t)
	s, _ := f.open(t, nil)
	if s.v1 || s.version != "v2.7.11" {
		t.Fatalf("version %q, v1 %v; want a 2.x server", s.version, s.v1)
	}
	_, err := New(t.Context(), Config{URL: f.srv.URL, Token: f.token, Bucket: f.bucket, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "org is required") {
		t.Fatalf("New without org on 2.x = %v, want org is required", err)
	}
}

func TestV2Write(t *testing.T) {
	f := newV2Fake(t)
	s, _ := f.open(t, func(c *Config) { c.BatchSize = 25 })
	rs := series(serialA)
	rs = append(rs, reading(serialB, 0, "OL", map[string]float64{"input.voltage": 229.5}, "ups.alarm", "fan"),
		ups.Reading{Serial: serialB, Time: base.Add(time.Second), Presence: ups.PresenceOffline})
	if err := s.WriteReadings(t.Context(), rs); err != nil {
		t.Fatal(err)
	}
	got := f.lines()
	// 30 + 1 reading points, 1 text point, 1 presence point.
	if len(got) != 33 {
		t.Fatalf("%d lines written, want 33:\n%s", len(got), strings.Join(got, "\n"))
	}
	if n := len(f.writes); n != 2 {
		t.Errorf("%d write requests, want 2 (batch size 25)", n)
	}
	want := []string{
		fmt.Sprintf(`ups_reading,serial=%s battery.charge=100,input.voltage=230,status="OB DISCHRG" %d`, serialA, base.UnixMilli()),
		fmt.Sprintf(`ups_reading,serial=%s input.voltage=229.5,status="OL" %d`, serialB, base.UnixMilli()),
		fmt.Sprintf(`ups_text,serial=%s ups.alarm="fan" %d`, serialB, base.UnixMilli()),
		fmt.Sprintf(`ups_presence,serial=%s state="offline" %d`, serialB, base.Add(time.Second).UnixMilli()),
	}
	// The fields of a point come in the reading's order: compare them as
	// sets.
	norm := func(line string) string {
		parts := strings.Split(line, " ")
		if len(parts) < 3 {
			return line
		}
		fields := strings.Split(strings.Join(parts[1:len(parts)-1], " "), ",")
		slices.Sort(fields)
		return parts[0] + " " + strings.Join(fields, ",") + " " + parts[len(parts)-1]
	}
	for _, w := range want {
		found := false
		for _, l := range got {
			found = found || norm(l) == norm(w)
		}
		if !found {
			t.Errorf("line %q not written; got:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if n, p := testutil.ToFloat64(s.m.Written), testutil.ToFloat64(s.m.Presence); n != 31 || p != 1 {
		t.Errorf("readings written = %v, presence = %v; want 31 and 1", n, p)
	}
}

// A point 2.x refuses (a field type conflict, answered 422 as a partial
// write) is dropped and counted; the rest of the request is stored and
// WriteReadings succeeds. A bad token is a configuration error, a 503 the
// server's unavailability.
func TestV2WriteErrors(t *testing.T) {
	f := newV2Fake(t)
	s, _ := f.open(t, nil)
	f.reject = func(line string) bool { return strings.Contains(line, "bad=") }
	rs := []ups.Reading{
		reading(serialA, 0, "OL", map[string]float64{"input.voltage": 230}),
		reading(serialA, 10*time.Second, "OL", map[string]float64{"bad": 1}),
		reading(serialA, 20*time.Second, "OL", map[string]float64{"input.voltage": 231}),
	}
	if err := s.WriteReadings(t.Context(), rs); err != nil {
		t.Fatalf("WriteReadings with a conflicting point = %v, want nil", err)
	}
	if got := f.lines(); len(got) != 2 {
		t.Fatalf("stored %q, want the two good points", got)
	}
	if n := testutil.ToFloat64(s.m.Dropped.WithLabelValues(reasonTypeConflict)); n != 1 {
		t.Errorf("dropped{%s} = %v, want 1", reasonTypeConflict, n)
	}

	f.mu.Lock()
	f.reject, f.fail = nil, http.StatusServiceUnavailable
	f.mu.Unlock()
	if err := s.WriteReadings(t.Context(), rs[:1]); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("write to a 503 = %v, want ErrUnavailable", err)
	}

	bad, _ := f.open(t, func(c *Config) { c.Token = "wrong" })
	f.mu.Lock()
	f.fail = 0
	f.mu.Unlock()
	err := bad.WriteReadings(t.Context(), rs[:1])
	if err == nil || errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("write with a bad token = %v, want a configuration error (unauthorized), not ErrUnavailable", err)
	}
}

// Query sends one Flux script over the bucket, the unit and the fields,
// with the four aggregates at the query's width, and builds the series
// from the answer's tables; Latest asks for last() and builds the reading.
func TestV2Query(t *testing.T) {
	f := newV2Fake(t)
	s, _ := f.open(t, nil)
	ts := func(d time.Duration) string { return base.Add(d).Format(time.RFC3339) }
	start, stop := ts(0), ts(5*time.Minute)
	f.answer = func(flux string) string {
		if strings.Contains(flux, "last()") {
			return csvTable("_result", "double", string(serialA),
				[6]string{start, stop, ts(290 * time.Second), "71", "battery.charge", measReading}) +
				csvTable("_result", "string", string(serialA),
					[6]string{start, stop, ts(290 * time.Second), "OB DISCHRG", fieldStatus, measReading},
					[6]string{start, stop, ts(290 * time.Second), "fan", "ups.alarm", measText})
		}
		var b strings.Builder
		for _, agg := range []struct{ name, v0, v1 string }{{"mean", "97.5", "91.5"}, {"min", "95", "89"}, {"max", "100", "94"}} {
			b.WriteString(csvTable(agg.name, "double", string(serialA),
				[6]string{start, stop, ts(0), agg.v0, "battery.charge", measReading},
				[6]string{start, stop, ts(time.Minute), agg.v1, "battery.charge", measReading}))
		}
		b.WriteString(csvTable("count", "long", string(serialA),
			[6]string{start, stop, ts(0), "6", "battery.charge", measReading},
			[6]string{start, stop, ts(time.Minute), "6", "battery.charge", measReading}))
		return b.String()
	}

	got, err := s.Query(t.Context(), store.Query{Serial: serialA, From: base, To: base.Add(5 * time.Minute), Every: time.Minute,
		Fields: []string{"battery.charge"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Point{{Time: base, Mean: 97.5, Min: 95, Max: 100, Count: 6}, {Time: base.Add(time.Minute), Mean: 91.5, Min: 89, Max: 94, Count: 6}}
	if len(got.Fields) != 1 || got.Fields[0].Field != "battery.charge" || fmt.Sprint(got.Fields[0].Points) != fmt.Sprint(want) {
		t.Fatalf("series = %+v, want battery.charge %+v", got.Fields, want)
	}
	f.mu.Lock()
	flux := f.queries[0]
	f.mu.Unlock()
	for _, part := range []string{
		`range(start: 2025-11-24T10:00:00Z, stop: 2025-11-24T10:05:00Z)`,
		`r._measurement == "ups_reading" and r.serial == "123456789012"`,
		`r._time < 2025-11-24T10:05:00Z`,
		`r._field == "battery.charge"`,
		`aggregateWindow(every: 60000000000ns, fn: mean, createEmpty: false, timeSrc: "_start") |> yield(name: "mean")`,
		`fn: count, createEmpty: false, timeSrc: "_start") |> yield(name: "count")`,
	} {
		if !strings.Contains(flux, part) {
			t.Errorf("query lacks %q:\n%s", part, flux)
		}
	}

	r, err := s.Latest(t.Context(), serialA)
	if err != nil {
		t.Fatal(err)
	}
	st := r.Status.Raw
	alarm, _ := r.Text("ups.alarm")
	charge, _ := r.Num(ups.BatteryCharge)
	if !r.Time.Equal(base.Add(290*time.Second)) || st != "OB DISCHRG" || alarm != "fan" || charge != 71 {
		t.Fatalf("latest = %+v", r)
	}

	// A unit without points: every look-back window asked, then not found.
	f.mu.Lock()
	f.answer, f.queries = nil, nil
	f.mu.Unlock()
	if _, err := s.Latest(t.Context(), serialB); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("latest of a silent unit = %v, want ErrNotFound", err)
	}
	f.mu.Lock()
	asked := len(f.queries)
	f.mu.Unlock()
	if asked != len(latestWindows)+1 {
		t.Errorf("%d queries for a silent unit, want %d (each window, then the future)", asked, len(latestWindows)+1)
	}

	bad, _ := f.open(t, func(c *Config) { c.Token = "wrong" })
	_, err = bad.Query(t.Context(), store.Query{Serial: serialA, From: base, To: base.Add(time.Hour), Every: time.Minute})
	if err == nil || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("query with a bad token = %v, want a configuration error, not ErrUnavailable", err)
	}
}

// DeleteUnit on 2.x posts the unit's predicate over all time to
// /api/v2/delete, with the org and bucket by name.
func TestV2Delete(t *testing.T) {
	f := newV2Fake(t)
	s, _ := f.open(t, nil)
	if err := s.DeleteUnit(t.Context(), serialB); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	got := f.deletes
	f.mu.Unlock()
	want := v2delete{Org: f.org, Bucket: f.bucket, Start: store.MinTime, Stop: store.MaxTime, Predicate: `serial="1234567890123456"`}
	if len(got) != 1 || got[0].Org != want.Org || got[0].Bucket != want.Bucket || !got[0].Start.Equal(want.Start) ||
		!got[0].Stop.Equal(want.Stop) || got[0].Predicate != want.Predicate {
		t.Fatalf("deletes = %+v, want %+v", got, want)
	}
	if err := s.DeleteUnit(t.Context(), "12"); !errors.Is(err, ups.ErrInvalidSerial) {
		t.Fatalf("DeleteUnit of a bad serial = %v", err)
	}
	if n := len(f.deletes); n != 1 {
		t.Fatalf("a bad serial reached the server (%d deletes)", n)
	}
	bad, _ := f.open(t, func(c *Config) { c.Token = "wrong" })
	if err := bad.DeleteUnit(t.Context(), serialA); err == nil || errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("delete with a bad token = %v, want a configuration error (401), not ErrUnavailable", err)
	}
	gone, _ := f.open(t, func(c *Config) { c.Bucket = "no-such-bucket" })
	if err := gone.DeleteUnit(t.Context(), serialA); err == nil || errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("delete in a missing bucket = %v, want a configuration error (404), not ErrUnavailable", err)
	}
}

// A server that did not say its version and has no /api/v2/delete (1.8
// behind a proxy that drops the header) answers a plain-text 404: the
// delete goes through InfluxQL's DROP SERIES on /query instead.
func TestDeleteFallsBackToV1(t *testing.T) {
	var (
		mu    sync.Mutex
		paths []string
		form  url.Values
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		paths = append(paths, r.URL.Path)
		switch r.URL.Path {
		case "/ping":
			w.WriteHeader(http.StatusNoContent)
		case "/query":
			if err := r.ParseForm(); err != nil || r.Header.Get("Authorization") != "Token user:pass" {
				http.Error(w, "bad request", http.StatusBadRequest)
				return
			}
			form = r.PostForm
			_, _ = io.WriteString(w, `{"results":[{"statement_id":0}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	s, err := New(t.Context(), Config{URL: srv.URL, Token: "user:pass", Org: "x", Bucket: "telemetry/autogen", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.DeleteUnit(t.Context(), serialA); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := `DROP SERIES FROM "ups_reading", "ups_text", "ups_presence" WHERE "serial" = '123456789012'`
	if fmt.Sprint(paths) != "[/ping /api/v2/delete /query]" || form.Get("db") != "telemetry" || form.Get("q") != want {
		t.Fatalf("requests %v, form %v; want the v2 delete, then DROP SERIES on db telemetry", paths, form)
	}
}

// A unit's texts are written when they change (or go), not with every
// reading, and again after textRefresh; a failed write forgets what it
// decided, so its retry writes the texts.
func TestTextsWrittenWhenChanged(t *testing.T) {
	f := newV2Fake(t)
	s, _ := f.open(t, nil)
	now := base
	s.now = func() time.Time { return now }
	at := time.Duration(0)
	withTexts := func(texts ...string) ups.Reading {
		at += 10 * time.Second
		return reading(serialA, at, "OL", map[string]float64{"input.voltage": 230}, texts...)
	}
	steps := []struct {
		name      string
		advance   time.Duration
		rs        []ups.Reading
		fail      bool
		wantTexts []string // ups_text fields written by this step
	}{
		{name: "first sight", rs: []ups.Reading{withTexts("device.model", "X", "device.mfr", "M")},
			wantTexts: []string{`device.model="X",device.mfr="M"`}},
		{name: "unchanged", rs: []ups.Reading{withTexts("device.model", "X", "device.mfr", "M")}},
		{name: "changed within a batch", rs: []ups.Reading{withTexts("device.model", "X", "device.mfr", "M"),
			withTexts("device.model", "Y", "device.mfr", "M"), withTexts("device.model", "Y", "device.mfr", "M")},
			wantTexts: []string{`device.model="Y",device.mfr="M"`}},
		{name: "write fails", rs: []ups.Reading{withTexts("device.model", "Z")}, fail: true},
		{name: "its retry writes them", rs: []ups.Reading{withTexts("device.model", "Z")},
			wantTexts: []string{`device.model="Z"`}},
		{name: "gone", rs: []ups.Reading{withTexts()}, wantTexts: []string{`_none=true`}},
		{name: "still none", rs: []ups.Reading{withTexts()}},
		{name: "back", rs: []ups.Reading{withTexts("ups.alarm", "fan")}, wantTexts: []string{`ups.alarm="fan"`}},
		{name: "unchanged before the refresh", advance: textRefresh - time.Second, rs: []ups.Reading{withTexts("ups.alarm", "fan")}},
		{name: "refreshed", advance: time.Second, rs: []ups.Reading{withTexts("ups.alarm", "fan")},
			wantTexts: []string{`ups.alarm="fan"`}},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		f.mu.Lock()
		f.writes, f.fail = nil, 0
		if st.fail {
			f.fail = http.StatusServiceUnavailable
		}
		f.mu.Unlock()
		err := s.WriteReadings(t.Context(), st.rs)
		if st.fail != (err != nil) {
			t.Fatalf("%s: WriteReadings = %v", st.name, err)
		}
		if st.fail {
			continue
		}
		var texts []string
		readings := 0
		for _, l := range f.lines() {
			parts := strings.Split(l, " ")
			switch {
			case strings.HasPrefix(l, measText+","):
				texts = append(texts, parts[1])
			case strings.HasPrefix(l, measReading+","):
				readings++
			}
		}
		if readings != len(st.rs) {
			t.Errorf("%s: %d reading points, want one per reading (%d)", st.name, readings, len(st.rs))
		}
		if fmt.Sprint(texts) != fmt.Sprint(st.wantTexts) {
			t.Errorf("%s: text points %q, want %q", st.name, texts, st.wantTexts)
		}
	}
}
