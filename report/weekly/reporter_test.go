package weekly

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/report"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/store/sqlite"
	"github.com/upswatch/upswatch/ups"
)

// timeline is an alert timeline holding events.
type timeline []rules.Event

func (tl timeline) Timeline(_ context.Context, s ups.Serial, from, to time.Time, _ int) ([]rules.Event, error) {
	var out []rules.Event
	for _, ev := range tl {
		if ev.Serial == s && !ev.At.Before(from) && ev.At.Before(to) {
			out = append(out, ev)
		}
	}
	return out, nil
}

// onBattery is the events of an on_battery alert over [start, end).
func onBattery(s ups.Serial, start, end time.Time) []rules.Event {
	fp := string(s) + "/on_battery/" + start.Format("0102150405")
	return []rules.Event{
		{Kind: rules.Firing, Rule: "on_battery", Serial: s, At: start.Add(6 * time.Second), StartedAt: start, Fingerprint: fp},
		{Kind: rules.Resolved, Rule: "on_battery", Serial: s, At: end, StartedAt: start, EndedAt: end, Fingerprint: fp},
	}
}

// TestWithTheReporter computes the summaries with the real reporter on
// SQLite, over a week in Ho Chi Minh City worked out by hand (Monday 2
// to Monday 9 March 2026, local):
//
//   - unit A (Office, hq): a reading a minute at 230 V (nominal 230) all
//     week, but Saturday 00:00-01:00 at 200 V, below 207 V: six of the
//     week's 1008 ten-minute means out of band, 1002/1008 = 99.40 % in
//     band; an outage Tuesday 10:00-10:31 (31 min);
//   - unit C (Rack 2, hq): no readings, an outage Thursday 14:00-14:12
//     (12 min); and one the Sunday before, outside the week;
//   - unit B (Kho): nothing at all.
//
// The manager of hq hears of 2 outages, 43 min on battery, the longest
// 31 min at Office (hq), mains in band 99.4 %; the owner of B of a week
// without outages, without the mains (no voltage).
func TestWithTheReporter(t *testing.T) {
	hcm := zone(t, "Asia/Ho_Chi_Minh")
	monday := time.Date(2026, 3, 2, 0, 0, 0, 0, hcm)
	local := func(day, hh, mm int) time.Time { return time.Date(2026, 3, 2+day, hh, mm, 0, 0, hcm) }
	hist, err := sqlite.Open(filepath.Join(t.TempDir(), "history.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hist.Close() })
	var rs []ups.Reading
	for ts := monday; ts.Before(monday.AddDate(0, 0, 7)); ts = ts.Add(time.Minute) {
		volts := 230.0
		if !ts.Before(local(5, 0, 0)) && ts.Before(local(5, 1, 0)) {
			volts = 200
		}
		r := ups.Reading{Serial: unitA, Time: ts, Status: ups.ParseStatus("OL"), HasStatus: true}
		r.SetText("ups.status", "OL")
		r.SetNum("input.voltage", volts)
		r.SetNum("input.voltage.nominal", 230)
		rs = append(rs, r)
	}
	if err := hist.WriteReadings(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	var tl timeline
	tl = append(tl, onBattery(unitA, local(1, 10, 0), local(1, 10, 31))...)
	tl = append(tl, onBattery(unitC, local(3, 14, 0), local(3, 14, 12))...)
	tl = append(tl, onBattery(unitC, local(-1, 9, 0), local(-1, 10, 0))...)
	rep, err := report.New(hist, tl)
	if err != nil {
		t.Fatal(err)
	}

	e := newEnv(t, local(7, 8, 5))
	e.account(t, recipients.Account{ID: "an", Language: "en", TimeZone: "Asia/Ho_Chi_Minh", Role: recipients.RoleManager,
		Sites: []string{"hq"}})
	e.account(t, recipients.Account{ID: "lan", Language: "vi", TimeZone: "Asia/Ho_Chi_Minh", Units: []ups.Serial{unitB}})
	ob := &outbox{}
	s, err := New(e.js, Config{Accounts: e.accounts, Units: e.units, Reports: rep, Outbox: ob, Templates: e.tmpl,
		Trigger: make(chan time.Time), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wait.For(t, "the first look", func() bool { return s.Checks() >= 1 })
	ob.mu.Lock()
	defer ob.mu.Unlock()
	want := map[string]string{
		"an":  "Last week: 2 outages, 43 min on battery, longest 31 min at Office (hq); mains in band 99.4 %.",
		"lan": "Tuần trước: không có lần mất điện nào trên 1 thiết bị của bạn.",
	}
	if len(ob.ds) != 2 {
		t.Fatalf("queued %d summaries, want 2", len(ob.ds))
	}
	for _, d := range ob.ds {
		if d.Text.Body != want[d.Recipient] {
			t.Errorf("%s: %q\nwant %q", d.Recipient, d.Text.Body, want[d.Recipient])
		}
	}
	if !slices.ContainsFunc(ob.ds, func(d pipeline.Direct) bool { return d.Text.Title == "📊 Your UPS week 02/03-08/03" }) {
		t.Errorf("no summary titled with the week's days: %+v", ob.ds)
	}
}
