package influx

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/store/storetest"
	"github.com/upswatch/upswatch/ups"
)

const (
	serialA ups.Serial = "123456789012"
	serialB ups.Serial = "1234567890123456"
)

// base is a whole minute, so minute buckets start on it.
var base = time.Date(2025, 11, 24, 10, 0, 0, 0, time.UTC)

// newStore opens a Store on a fresh database of inf, so subtests sharing
// one server do not see each other's points.
func newStore(t *testing.T, inf *testenv.Influx, db string, mod func(*Config)) (*Store, *prometheus.Registry) {
	t.Helper()
	if err := inf.Exec("CREATE DATABASE " + db); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := Config{
		URL:        inf.URL,
		Org:        inf.Org,
		Bucket:     db + "/autogen",
		Timeout:    5 * time.Second,
		Logger:     slog.New(slog.DiscardHandler),
		Registerer: reg,
	}
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

// reading builds a telemetry reading at base+offset.
func reading(serial ups.Serial, offset time.Duration, status string, nums map[string]float64, texts ...string) ups.Reading {
	r := ups.Reading{Serial: serial, Time: base.Add(offset)}
	for k, v := range nums {
		r.SetNum(k, v)
	}
	if status != "" {
		r.SetText("ups.status", status)
	}
	for i := 0; i+1 < len(texts); i += 2 {
		r.SetText(texts[i], texts[i+1])
	}
	return r
}

// series returns readings every 10 s for 5 minutes: battery.charge falls
// from 100 by 1 per reading, input.voltage alternates 230/0.
func series(serial ups.Serial) []ups.Reading {
	var rs []ups.Reading
	for i := range 30 {
		v := 230.0
		if i%2 == 1 {
			v = 0
		}
		rs = append(rs, reading(serial, time.Duration(i)*10*time.Second, "OB DISCHRG",
			map[string]float64{"battery.charge": float64(100 - i), "input.voltage": v}))
	}
	return rs
}

func TestInflux(t *testing.T) {
	inf := testenv.Influxd(t)
	ctx := t.Context()

	t.Run("round trip", func(t *testing.T) {
		s, reg := newStore(t, inf, "roundtrip", nil)
		rs := series(serialA)
		last := reading(serialA, 5*time.Minute, "OL CHRG", map[string]float64{"battery.charge": 71, "ups.load": 23.5},
			"ups.alarm", `Replace "battery" \ now`, "device.model", "Back-UPS 700")
		rs = append(rs, last)
		rs = append(rs, ups.Reading{Serial: serialA, Time: base.Add(6 * time.Minute), Presence: ups.PresenceOffline})
		if err := s.WriteReadings(ctx, rs); err != nil {
			t.Fatalf("WriteReadings: %v", err)
		}
		if got := counterValue(t, s.m.Written); got != 31 {
			t.Errorf("readings_written_total = %v, want 31", got)
		}
		if got := counterValue(t, s.m.Presence); got != 1 {
			t.Errorf("presence_written_total = %v, want 1", got)
		}
		if n := gatherCount(t, reg, "upswatch_store_dropped_total"); n != len(allReasons) {
			t.Errorf("dropped_total has %d series, want %d: zeros exported for every reason", n, len(allReasons))
		}

		got, err := s.Latest(ctx, serialA)
		if err != nil {
			t.Fatalf("Latest: %v", err)
		}
		if !got.Time.Equal(last.Time) || got.Serial != serialA {
			t.Errorf("Latest = %s at %v, want %s at %v", got.Serial, got.Time, serialA, last.Time)
		}
		if !got.HasStatus || got.Status.Raw != "OL CHRG" || !got.Status.Has(ups.OL|ups.CHRG) {
			t.Errorf("Latest status = %+v (has %v), want OL CHRG", got.Status, got.HasStatus)
		}
		// Only the newest reading's variables: input.voltage was last
		// reported earlier and must not be mixed in.
		if len(got.Metrics) != 2 || got.NumOr(ups.BatteryCharge, -1) != 71 || got.NumOr(ups.UPSLoad, -1) != 23.5 {
			t.Errorf("Latest metrics = %+v, want battery.charge 71 and ups.load 23.5 only", got.Metrics)
		}
		for name, want := range map[string]string{"ups.alarm": `Replace "battery" \ now`, "device.model": "Back-UPS 700"} {
			if v, ok := got.Text(name); !ok || v != want {
				t.Errorf("Latest text %s = %q, %v; want %q", name, v, ok, want)
			}
		}

		q := store.Query{Serial: serialA, From: base, To: base.Add(5 * time.Minute), Every: time.Minute}
		res, err := s.Query(ctx, q)
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		want := expectAggregates(series(serialA), q)
		checkSeries(t, res, want)

		// A range starting mid-bucket: the bucket keeps its aligned
		// start and aggregates only the readings inside the range.
		q2 := store.Query{Serial: serialA, From: base.Add(30 * time.Second), To: base.Add(2 * time.Minute), Every: time.Minute, Fields: []string{"battery.charge"}}
		res2, err := s.Query(ctx, q2)
		if err != nil {
			t.Fatalf("Query mid-bucket: %v", err)
		}
		checkSeries(t, res2, expectAggregates(series(serialA), q2))

		if _, err := s.Latest(ctx, serialB); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Latest of a unit without readings: %v, want ErrNotFound", err)
		}
	})

	t.Run("fields filter", func(t *testing.T) {
		s, _ := newStore(t, inf, "fields", nil)
		if err := s.WriteReadings(ctx, series(serialA)); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			fields []string
			want   []string
		}{
			{nil, []string{"battery.charge", "input.voltage"}},
			{[]string{"input.voltage"}, []string{"input.voltage"}},
			{[]string{"input.voltage", "battery.charge"}, []string{"battery.charge", "input.voltage"}},
			{[]string{"ups.load"}, nil},   // not reported: left out
			{[]string{"status"}, nil},     // the status string is no numeric field
			{[]string{`we"ird${x}`}, nil}, // quoted safely
			{[]string{"ups.load", "input.voltage"}, []string{"input.voltage"}},
		} {
			res, err := s.Query(ctx, store.Query{Serial: serialA, From: base, To: base.Add(time.Hour), Every: time.Hour, Fields: tc.fields})
			if err != nil {
				t.Fatalf("Query %q: %v", tc.fields, err)
			}
			var got []string
			for _, f := range res.Fields {
				got = append(got, f.Field)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("Query fields %q = %q, want %q", tc.fields, got, tc.want)
			}
		}
	})

	t.Run("bad query", func(t *testing.T) {
		s, _ := newStore(t, inf, "badquery", nil)
		for _, q := range []store.Query{
			{Serial: "12", From: base, To: base.Add(time.Hour), Every: time.Minute},
			{Serial: serialA, From: base, To: base, Every: time.Minute},
			{Serial: serialA, From: base, To: base.Add(time.Hour), Every: 0},
			{Serial: serialA, From: base, To: base.Add(time.Hour), Every: time.Microsecond},
			{Serial: serialA, From: base, To: base.Add(365 * 24 * time.Hour), Every: time.Second},
			{Serial: serialA, From: base, To: base.Add(time.Hour), Every: time.Minute, Fields: []string{""}},
		} {
			if _, err := s.Query(ctx, q); !errors.Is(err, store.ErrBadQuery) {
				t.Errorf("Query(%+v) = %v, want ErrBadQuery", q, err)
			}
		}
	})

	t.Run("idempotent rewrite", func(t *testing.T) {
		s, _ := newStore(t, inf, "idempotent", func(c *Config) { c.BatchSize = 7 })
		rs := series(serialA)
		// A redelivered batch, then one overlapping it.
		for _, batch := range [][]ups.Reading{rs, rs, rs[10:]} {
			if err := s.WriteReadings(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
		q := store.Query{Serial: serialA, From: base, To: base.Add(time.Hour), Every: time.Hour}
		res, err := s.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		checkSeries(t, res, expectAggregates(rs, q))
	})

	t.Run("latest texts of an earlier point", func(t *testing.T) {
		s, _ := newStore(t, inf, "texts", nil)
		nums := map[string]float64{"battery.charge": 90}
		for _, st := range []struct {
			r         ups.Reading
			wantTexts map[string]string
		}{
			// The second reading's unchanged texts are not written again:
			// Latest still has them, at the second reading's time.
			{reading(serialA, 0, "OL", nums, "device.model", "Back-UPS 700", "ups.alarm", "fan"), map[string]string{"device.model": "Back-UPS 700", "ups.alarm": "fan"}},
			{reading(serialA, 10*time.Second, "OL", nums, "device.model", "Back-UPS 700", "ups.alarm", "fan"), map[string]string{"device.model": "Back-UPS 700", "ups.alarm": "fan"}},
			// A text gone: only the rest.
			{reading(serialA, 20*time.Second, "OL", nums, "device.model", "Back-UPS 700"), map[string]string{"device.model": "Back-UPS 700"}},
			// All gone: none.
			{reading(serialA, 30*time.Second, "OL", nums), map[string]string{}},
		} {
			if err := s.WriteReadings(ctx, []ups.Reading{st.r}); err != nil {
				t.Fatal(err)
			}
			got, err := s.Latest(ctx, serialA)
			if err != nil {
				t.Fatalf("Latest: %v", err)
			}
			texts := map[string]string{}
			for _, x := range got.Texts {
				texts[x.Name] = x.Value
			}
			if !got.Time.Equal(st.r.Time) || got.NumOr(ups.BatteryCharge, -1) != 90 || fmt.Sprint(texts) != fmt.Sprint(st.wantTexts) {
				t.Errorf("after the reading at %v: Latest at %v, charge %v, texts %v; want texts %v",
					st.r.Time, got.Time, got.NumOr(ups.BatteryCharge, -1), texts, st.wantTexts)
			}
		}
	})

	t.Run("delete unit", func(t *testing.T) {
		s, _ := newStore(t, inf, "deleteunit", nil)
		rs := append(series(serialA), series(serialB)...)
		rs = append(rs, reading(serialA, time.Hour, "", nil, "ups.alarm", "x"),
			ups.Reading{Serial: serialA, Time: base, Presence: ups.PresenceOnline})
		if err := s.WriteReadings(ctx, rs); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteUnit(ctx, serialA); err != nil {
			t.Fatalf("DeleteUnit: %v", err)
		}
		if _, err := s.Latest(ctx, serialA); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Latest after DeleteUnit = %v, want ErrNotFound", err)
		}
		for _, m := range []string{measReading, measText, measPresence} {
			if n := countPoints(t, inf, "deleteunit", m, serialA); n != 0 {
				t.Errorf("%d %s points of the deleted unit left", n, m)
			}
		}
		if _, err := s.Latest(ctx, serialB); err != nil {
			t.Errorf("Latest of the other unit after DeleteUnit: %v", err)
		}
		if err := s.DeleteUnit(ctx, "bad"); !errors.Is(err, ups.ErrInvalidSerial) {
			t.Errorf("DeleteUnit(bad serial) = %v, want ErrInvalidSerial", err)
		}
	})

	t.Run("bad point dropped, rest lands", func(t *testing.T) {
		s, _ := newStore(t, inf, "typeconflict", nil)
		// Another writer made ups.load a string in this shard: a float
		// ups.load is now a type conflict for every unit.
		writeRaw(t, inf, "typeconflict", `ups_reading,serial=999999999999 ups.load="high" `+fmt.Sprint(base.UnixMilli()))
		rs := series(serialA)
		bad := reading(serialB, time.Minute, "OL", map[string]float64{"ups.load": 50})
		rs = append(rs[:15:15], append([]ups.Reading{bad}, rs[15:]...)...)
		// Values no InfluxDB takes are dropped before sending.
		nan := reading(serialB, 2*time.Minute, "OL", map[string]float64{"battery.charge": math.NaN(), "input.voltage": 229})
		rs = append(rs, nan, ups.Reading{Serial: "42", Time: base})
		if err := s.WriteReadings(ctx, rs); err != nil {
			t.Fatalf("WriteReadings = %v, want nil: bad data must not wedge the stream", err)
		}
		for reason, want := range map[string]float64{reasonTypeConflict: 1, reasonNonFinite: 1, reasonBadSerial: 1, reasonParse: 0} {
			if got := counterValue(t, s.m.Dropped.WithLabelValues(reason)); got != want {
				t.Errorf("dropped_total{reason=%q} = %v, want %v", reason, got, want)
			}
		}
		if n := countPoints(t, inf, "typeconflict", measReading, serialA); n != 30*3 {
			t.Errorf("unit A has %d values stored, want %d: the good points of the batch must land", n, 30*3)
		}
		if got, err := s.Latest(ctx, serialB); err != nil || got.NumOr(ups.InputVoltage, -1) != 229 {
			t.Errorf("Latest(B) = %+v, %v; want the reading with its NaN value dropped", got.Metrics, err)
		}
	})
}

// TestInfluxOutage: with InfluxDB down a write fails fast with
// ErrUnavailable; once it is back, the caller's retry lands every reading
// exactly once.
func TestInfluxOutage(t *testing.T) {
	inf := testenv.Influxd(t)
	ctx := t.Context()
	const timeout = 2 * time.Second
	s, _ := newStore(t, inf, "outage", func(c *Config) { c.Timeout = timeout; c.BatchSize = 10 })

	first := series(serialA)
	if err := s.WriteReadings(ctx, first[:10]); err != nil {
		t.Fatal(err)
	}
	inf.Stop()
	start := time.Now()
	err := s.WriteReadings(ctx, first)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("WriteReadings with influxd down = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > timeout+time.Second {
		t.Errorf("WriteReadings took %v with influxd down, want at most the %v timeout", d, timeout)
	}
	if _, err := s.Query(ctx, store.Query{Serial: serialA, From: base, To: base.Add(time.Hour), Every: time.Hour}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Query with influxd down = %v, want ErrUnavailable", err)
	}
	if got := counterValue(t, s.m.WriteErrors); got != 1 {
		t.Errorf("write_errors_total = %v, want 1", got)
	}

	inf.Start()
	if err := s.WriteReadings(ctx, first); err != nil {
		t.Fatalf("retry after restart: %v", err)
	}
	q := store.Query{Serial: serialA, From: base, To: base.Add(time.Hour), Every: time.Hour}
	res, err := s.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	checkSeries(t, res, expectAggregates(first, q))
}

func TestNewErrors(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Bucket: "b"}, "influx store: url is required"},
		{Config{URL: "localhost:8086", Bucket: "b"}, `influx store: url "localhost:8086" must start with http:// or https://`},
		{Config{URL: "http://127.0.0.1:1"}, "influx store: bucket is required"},
		{Config{URL: "http://127.0.0.1:1", Bucket: "b", BatchSize: -1}, "influx store: batch size -1 must not be negative"},
		{Config{URL: "http://127.0.0.1:1", Bucket: "b", Timeout: -time.Second}, "influx store: timeout -1s must not be negative"},
	} {
		_, err := New(ctx, tc.cfg)
		if err == nil || err.Error() != tc.want {
			t.Errorf("New(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	port := testenv.FreePort(t)
	_, err := New(ctx, Config{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Bucket: "b", Timeout: time.Second})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("New with nothing listening = %v, want ErrUnavailable", err)
	}
}

// expectAggregates computes what Query must answer from the readings.
func expectAggregates(rs []ups.Reading, q store.Query) map[string][]store.Point {
	out := map[string][]store.Point{}
	every := q.Every.Nanoseconds()
	for _, r := range rs {
		if r.Time.Before(q.From) || !r.Time.Before(q.To) {
			continue
		}
		t := r.Time.UnixNano()
		t -= ((t % every) + every) % every
		for _, m := range r.Metrics {
			if len(q.Fields) > 0 && !contains(q.Fields, m.Name) {
				continue
			}
			ps := out[m.Name]
			if n := len(ps); n == 0 || ps[n-1].Time.UnixNano() != t {
				ps = append(ps, store.Point{Time: time.Unix(0, t).UTC(), Min: math.Inf(1), Max: math.Inf(-1)})
			}
			p := &ps[len(ps)-1]
			p.Mean = (p.Mean*float64(p.Count) + m.Value) / float64(p.Count+1)
			p.Count++
			p.Min = math.Min(p.Min, m.Value)
			p.Max = math.Max(p.Max, m.Value)
			out[m.Name] = ps
		}
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func checkSeries(t *testing.T, got store.Series, want map[string][]store.Point) {
	t.Helper()
	if len(got.Fields) != len(want) {
		t.Fatalf("Query returned %d fields %+v, want %d", len(got.Fields), got.Fields, len(want))
	}
	for i, f := range got.Fields {
		if i > 0 && got.Fields[i-1].Field >= f.Field {
			t.Errorf("fields not sorted: %q after %q", f.Field, got.Fields[i-1].Field)
		}
		w := want[f.Field]
		if len(f.Points) != len(w) {
			t.Errorf("field %s: %d points %+v, want %d %+v", f.Field, len(f.Points), f.Points, len(w), w)
			continue
		}
		for j, p := range f.Points {
			e := w[j]
			if !p.Time.Equal(e.Time) || p.Count != e.Count || math.Abs(p.Mean-e.Mean) > 1e-9 || p.Min != e.Min || p.Max != e.Max {
				t.Errorf("field %s point %d = %+v, want %+v", f.Field, j, p, e)
			}
		}
	}
}

// writeRaw writes line protocol as another client would.
func writeRaw(t *testing.T, inf *testenv.Influx, db, lines string) {
	t.Helper()
	u := inf.URL + "/api/v2/write?" + url.Values{"bucket": {db + "/autogen"}, "precision": {"ms"}}.Encode()
	resp, err := http.Post(u, "text/plain", strings.NewReader(lines))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("raw write: %s", resp.Status)
	}
}

// countPoints counts a unit's stored field values in a measurement with
// InfluxQL, independent of the code under test.
func countPoints(t *testing.T, inf *testenv.Influx, db, meas string, serial ups.Serial) int {
	t.Helper()
	q := fmt.Sprintf(`SELECT * FROM %q WHERE "serial" = '%s'`, meas, serial)
	resp, err := http.Get(inf.URL + "/query?" + url.Values{"db": {db}, "q": {q}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Series []struct {
				Columns []string `json:"columns"`
				Values  [][]any  `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	if err := jsonDecode(resp, &out); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range out.Results {
		for _, s := range r.Series {
			for _, row := range s.Values {
				for i, v := range row {
					if c := s.Columns[i]; v != nil && c != "time" && c != "serial" {
						n++
					}
				}
			}
		}
	}
	return n
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func gatherCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

func TestStatusChanges(t *testing.T) {
	s, _ := newStore(t, testenv.Influxd(t), "status", nil)
	storetest.StatusChanges(t, s)
}

func TestOnBattery(t *testing.T) {
	s, _ := newStore(t, testenv.Influxd(t), "onbattery", nil)
	storetest.OnBattery(t, s)
}

// TestQueryRawMatchesFlux: on InfluxDB 1.x, narrow buckets are aggregated
// from the raw points (queryRaw), wide ones by Flux (queryFlux); both
// must answer alike: the same buckets, counts, minima and maxima, means
// within rounding.
func TestQueryRawMatchesFlux(t *testing.T) {
	s, _ := newStore(t, testenv.Influxd(t), "rawflux", nil)
	if !s.v1 {
		t.Fatalf("testenv's influxd is %q: expected 1.x, whose narrow queries read raw", s.version)
	}
	var rs []ups.Reading
	// Every 7 s for three hours, a 20-minute gap, values with fractions.
	for i := range 3 * 3600 / 7 {
		off := time.Duration(i) * 7 * time.Second
		if off >= time.Hour && off < time.Hour+20*time.Minute {
			continue
		}
		r := ups.Reading{Serial: serialA, Time: base.Add(off)}
		r.SetText("ups.status", "OL")
		r.SetNum("input.voltage", 220+float64(i%13)*1.37)
		r.SetNum("battery.charge", 100-float64(i%29)/3)
		rs = append(rs, r)
	}
	if err := s.WriteReadings(t.Context(), rs); err != nil {
		t.Fatal(err)
	}
	for _, q := range []store.Query{
		{Serial: serialA, From: base, To: base.Add(3 * time.Hour), Every: time.Minute},
		{Serial: serialA, From: base.Add(13 * time.Second), To: base.Add(2*time.Hour + 17*time.Second), Every: 10 * time.Second, Fields: []string{"input.voltage"}},
		{Serial: serialA, From: base.Add(50 * time.Minute), To: base.Add(90 * time.Minute), Every: 45 * time.Second},
		{Serial: serialA, From: base.Add(50 * time.Minute), To: base.Add(100 * time.Minute), Every: 7 * time.Minute}, // short range, wide buckets
		{Serial: serialA, From: base.Add(10 * time.Minute), To: base.Add(12 * time.Minute), Every: 2 * time.Minute},
		{Serial: serialA, From: base.Add(4 * time.Hour), To: base.Add(5 * time.Hour), Every: time.Minute}, // nothing there
	} {
		t.Run(fmt.Sprintf("%s+%s every %s", q.From.Format("15:04:05"), q.To.Sub(q.From), q.Every), func(t *testing.T) {
			raw, err := s.queryRaw(t.Context(), q)
			if err != nil {
				t.Fatal(err)
			}
			flux, err := s.queryFlux(t.Context(), q)
			if err != nil {
				t.Fatal(err)
			}
			if len(raw.Fields) != len(flux.Fields) {
				t.Fatalf("raw has %d fields, flux %d", len(raw.Fields), len(flux.Fields))
			}
			for i, rf := range raw.Fields {
				ff := flux.Fields[i]
				if rf.Field != ff.Field || len(rf.Points) != len(ff.Points) || len(rf.Points) == 0 {
					t.Fatalf("field %s with %d points, flux %s with %d", rf.Field, len(rf.Points), ff.Field, len(ff.Points))
				}
				for j, rp := range rf.Points {
					fp := ff.Points[j]
					if !rp.Time.Equal(fp.Time) || rp.Count != fp.Count || rp.Min != fp.Min || rp.Max != fp.Max ||
						math.Abs(rp.Mean-fp.Mean) > 1e-9*math.Abs(fp.Mean) {
						t.Fatalf("%s point %d: raw %+v, flux %+v", rf.Field, j, rp, fp)
					}
				}
			}
		})
	}
}
