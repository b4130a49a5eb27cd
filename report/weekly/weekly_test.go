package weekly

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/keyring/keyringtest"
	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/notify/templates"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/report"
	"github.com/upswatch/upswatch/ups"
)

func zone(t testing.TB, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestSchedule: the next Monday at 08:00 in the account's zone, and the
// week its summary reports (Monday 00:00 to Monday 00:00 there), in
// zones east and west of UTC and across New York's change to daylight
// time on Sunday 8 March 2026 (EST, UTC-5, to EDT, UTC-4).
func TestSchedule(t *testing.T) {
	hcm, ny, utc := zone(t, "Asia/Ho_Chi_Minh"), zone(t, "America/New_York"), time.UTC
	tests := []struct {
		name     string
		loc      *time.Location
		now      string // UTC
		next     string // UTC
		last     string // UTC
		from, to string // UTC, of the week the last slot reports
	}{
		{"hcm, Sunday", hcm, "2026-03-08T12:00:00Z", "2026-03-09T01:00:00Z", "2026-03-02T01:00:00Z", "2026-02-22T17:00:00Z", "2026-03-01T17:00:00Z"},
		// Monday 08:00 in Ho Chi Minh City is Monday 01:00 UTC: at that
		// instant the slot is the last one, the next a week on.
		{"hcm, at the slot", hcm, "2026-03-09T01:00:00Z", "2026-03-16T01:00:00Z", "2026-03-09T01:00:00Z", "2026-03-01T17:00:00Z", "2026-03-08T17:00:00Z"},
		// Sunday 23:30 UTC is already Monday 06:30 there.
		{"hcm, Monday before 08:00 there", hcm, "2026-03-08T23:30:00Z", "2026-03-09T01:00:00Z", "2026-03-02T01:00:00Z", "2026-02-22T17:00:00Z", "2026-03-01T17:00:00Z"},
		{"utc, Wednesday", utc, "2026-03-11T10:00:00Z", "2026-03-16T08:00:00Z", "2026-03-09T08:00:00Z", "2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z"},
		// Before the change: Monday 2 March 08:00 EST is 13:00 UTC.
		{"new york, winter", ny, "2026-03-01T12:00:00Z", "2026-03-02T13:00:00Z", "2026-02-23T13:00:00Z", "2026-02-16T05:00:00Z", "2026-02-23T05:00:00Z"},
		// Saturday 7 March, EST, asks for Monday 9 March: EDT by then,
		// 08:00 is 12:00 UTC (not 13:00, a week's 168 hours on).
		{"new york, across the change", ny, "2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z", "2026-03-02T13:00:00Z", "2026-02-23T05:00:00Z", "2026-03-02T05:00:00Z"},
		// At the slot after the change, the week reported holds it: 167
		// hours, from 00:00 EST to 00:00 EDT.
		{"new york, the week of the change", ny, "2026-03-09T12:00:00Z", "2026-03-16T12:00:00Z", "2026-03-09T12:00:00Z", "2026-03-02T05:00:00Z", "2026-03-09T04:00:00Z"},
	}
	parse := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := parse(tt.now)
			if got := Next(now, tt.loc, 8, 0); !got.Equal(parse(tt.next)) {
				t.Errorf("Next = %s, want %s", got.UTC().Format(time.RFC3339), tt.next)
			}
			last := Last(now, tt.loc, 8, 0)
			if !last.Equal(parse(tt.last)) {
				t.Errorf("Last = %s, want %s", last.UTC().Format(time.RFC3339), tt.last)
			}
			from, to := Week(last, tt.loc)
			if !from.Equal(parse(tt.from)) || !to.Equal(parse(tt.to)) {
				t.Errorf("Week = %s .. %s, want %s .. %s", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), tt.from, tt.to)
			}
			if last.In(tt.loc).Weekday() != time.Monday || last.In(tt.loc).Hour() != 8 {
				t.Errorf("Last is %s there, not Monday 08:00", last.In(tt.loc))
			}
		})
	}
	if d := parse("2026-03-09T04:00:00Z").Sub(parse("2026-03-02T05:00:00Z")); d != 167*time.Hour {
		t.Fatalf("the table's week of the change is %v", d)
	}
	for _, tt := range []struct {
		in   string
		want string
	}{{"2026-03-02T00:00:00Z", "2026-W10"}, {"2025-12-29T00:00:00Z", "2026-W01"}, {"2027-01-01T00:00:00Z", "2026-W53"}} {
		if got := WeekID(parse(tt.in)); got != tt.want {
			t.Errorf("WeekID(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// clock is the tests' settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// fleet is a registry of a few units.
type fleet map[ups.Serial]registry.Unit

func (f fleet) Lookup(s ups.Serial) (registry.Unit, bool) { u, ok := f[s]; return u, ok }
func (f fleet) List() []registry.Unit {
	var out []registry.Unit
	for _, u := range f {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b registry.Unit) int { return cmpString(string(a.Serial), string(b.Serial)) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// reports answers for every unit the hand-made week (rep), its longest
// outage at that unit, but for unit C, which had a week without data; it
// records what it was asked, and fail makes the next answers errors.
type reports struct {
	mu    sync.Mutex
	rep   report.Report
	asked []asked
	fail  int
}

type asked struct {
	serial   ups.Serial
	from, to time.Time
}

func (r *reports) Unit(_ context.Context, serial ups.Serial, from, to time.Time) (report.Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, asked{serial, from, to})
	if r.fail > 0 {
		r.fail--
		return report.Report{}, errors.New("history store down")
	}
	if serial == unitC {
		return report.Report{From: from, To: to, Units: []ups.Serial{serial}, Alerts: map[string]int{}}, nil
	}
	rep := r.rep
	rep.From, rep.To, rep.Units, rep.Outages.LongestUnit = from, to, []ups.Serial{serial}, serial
	return rep, nil
}

// times counts the reports of serial over [from, to) asked for.
func (r *reports) times(serial ups.Serial, from, to time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, a := range r.asked {
		if a.serial == serial && a.from.Equal(from) && a.to.Equal(to) {
			n++
		}
	}
	return n
}

const (
	unitA = ups.Serial("110000000001")
	unitB = ups.Serial("110000000002")
	unitC = ups.Serial("110000000003")
	unitD = ups.Serial("110000000004")
)

// week is the hand-counted week of a unit: outages of 31, 12 and 4
// minutes (47 on battery), 992 of 1000 ten-minute voltage means in band.
func week() report.Report {
	share := 992.0 / 1000
	return report.Report{Outages: report.Outages{Count: 3, TotalS: (31 + 12 + 4) * 60, LongestS: 31 * 60},
		Mains: report.Mains{VoltageWindows: 1000, VoltageInBand: 992, VoltageInBandShare: &share}}
}

type env struct {
	ns       *server.Server
	js       jetstream.JetStream
	accounts *recipients.Store
	units    fleet
	reports  *reports
	tmpl     *templates.Set
	clock    *clock
}

func newEnv(t *testing.T, now time.Time) *env {
	t.Helper()
	ns, _, js := bustest.Server(t)
	e := &env{ns: ns, js: js, reports: &reports{rep: week()}, clock: &clock{t: now},
		units: fleet{
			unitA: {Serial: unitA, Name: "Office", Site: "hq"},
			unitB: {Serial: unitB, Name: "Kho"},
			unitC: {Serial: unitC, Name: "Rack 2", Site: "hq"},
			unitD: {Serial: unitD, Name: "Quầy"},
		}}
	ctx, cancel := context.WithCancel(context.Background())
	var err error
	if e.accounts, err = recipients.Open(ctx, js, recipients.Options{Sealer: keyringtest.Records(t)}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = e.accounts.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-e.accounts.Ready()
	if e.tmpl, err = templates.Load(""); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) account(t *testing.T, a recipients.Account, tokens ...string) {
	t.Helper()
	if _, err := e.accounts.Create(context.Background(), recipients.Recipient{Account: a,
		Personal: recipients.Personal{Name: "Someone", Contacts: recipients.Contacts{FCMTokens: tokens}}}); err != nil {
		t.Fatal(err)
	}
}

// sender runs a Sender (run) and waits for its first look.
func (e *env) sender(t *testing.T, js jetstream.JetStream, outbox Outbox, accounts Accounts, trigger <-chan time.Time, id string) (*Sender, func()) {
	t.Helper()
	s, stop := e.run(t, js, outbox, accounts, trigger, id)
	wait.For(t, "the sender's first look", func() bool { return s.Checks() >= 1 })
	return s, stop
}

// run runs a Sender on js until the returned stop (or the test's end).
func (e *env) run(t *testing.T, js jetstream.JetStream, outbox Outbox, accounts Accounts, trigger <-chan time.Time, id string) (*Sender, func()) {
	t.Helper()
	s, err := New(js, Config{Accounts: accounts, Units: e.units, Reports: e.reports, Outbox: outbox, Templates: e.tmpl,
		Trigger: trigger, InstanceID: id, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	stop := testenv.Background(t, s.Run)
	return s, stop
}

// look triggers one more look at now and waits for it.
func look(t *testing.T, e *env, s *Sender, trigger chan time.Time, now time.Time) {
	t.Helper()
	e.clock.Set(now)
	n := s.Checks()
	trigger <- now
	wait.For(t, "a look", func() bool { return s.Checks() > n })
}

// outbox records what a sender queues.
type outbox struct {
	mu sync.Mutex
	ds []pipeline.Direct
}

func (o *outbox) Enqueue(_ context.Context, d pipeline.Direct) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ds = append(o.ds, d)
	return len(d.Channels), nil
}

func (o *outbox) recipients() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, d := range o.ds {
		out = append(out, d.Recipient)
	}
	return out
}

// rezoned gives one account a time zone the store would not accept (as
// one stored by an older version, or a zone this machine lacks).
type rezoned struct {
	Accounts
	id, tz string
}

func (r rezoned) Lookup(id string) (recipients.Recipient, bool) {
	rec, ok := r.Accounts.Lookup(id)
	if id == r.id {
		rec.TimeZone = r.tz
	}
	return rec, ok
}

// TestDueInEachZone steps a clock through Monday 9 March 2026: each
// account's summary is queued at its own Monday 08:00 (Ho Chi Minh City
// UTC+7; New York, on daylight time since the day before, UTC-4; a zone
// unknown here taken as UTC), one held by quiet hours at their end, none
// on the Wednesday before (the week's is over a day late), none for the
// opted-out account or the account without units, and each once. A
// report that fails releases the claim: the next look sends.
func TestDueInEachZone(t *testing.T) {
	start := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC) // Wednesday
	e := newEnv(t, start)
	allChannels := recipients.Preferences{Channels: map[string][]string{"warning": {recipients.FCM, recipients.SMS}}}
	e.account(t, recipients.Account{ID: "hcm", Language: "vi", TimeZone: "Asia/Ho_Chi_Minh", Units: []ups.Serial{unitB},
		Preferences: allChannels})
	e.account(t, recipients.Account{ID: "quiet", Language: "en", TimeZone: "Asia/Ho_Chi_Minh", Units: []ups.Serial{unitD},
		Preferences: recipients.Preferences{QuietHours: &recipients.QuietHours{Start: "22:00", End: "09:00"}}})
	e.account(t, recipients.Account{ID: "ny", Language: "en", TimeZone: "America/New_York", Role: recipients.RoleManager,
		Sites: []string{"hq"}})
	e.account(t, recipients.Account{ID: "ny2", Language: "en", TimeZone: "America/New_York", Role: recipients.RoleManager,
		Sites: []string{"hq"}})
	e.account(t, recipients.Account{ID: "mars", Language: "en", Units: []ups.Serial{unitD}})
	e.account(t, recipients.Account{ID: "optout", Language: "en", TimeZone: "Asia/Ho_Chi_Minh", Units: []ups.Serial{unitB},
		Preferences: recipients.Preferences{WeeklyReportOff: true}})
	e.account(t, recipients.Account{ID: "nounits", Language: "en", TimeZone: "Asia/Ho_Chi_Minh"})
	ob := &outbox{}
	trigger := make(chan time.Time)
	s, _ := e.sender(t, e.js, ob, rezoned{e.accounts, "mars", "Mars/Olympus_Mons"}, trigger, "a")
	steps := []struct {
		name string
		utc  string
		fail int // reports failing in this look
		want []string
	}{
		{"Wednesday: last Monday's summaries are over a day late", "2026-03-04T12:00:00Z", 0, nil},
		{"Monday 07:59 in Ho Chi Minh City", "2026-03-09T00:59:00Z", 0, nil},
		{"Monday 08:00 there, the report fails", "2026-03-09T01:00:00Z", 1, nil},
		{"a minute later", "2026-03-09T01:01:00Z", 0, []string{"hcm"}},
		{"08:30 there: quiet until 09:00", "2026-03-09T01:30:00Z", 0, []string{"hcm"}},
		{"09:00 there", "2026-03-09T02:00:00Z", 0, []string{"hcm", "quiet"}},
		{"08:00 UTC", "2026-03-09T08:00:00Z", 0, []string{"hcm", "quiet", "mars"}},
		{"07:59 in New York (08:59 had it stayed on EST)", "2026-03-09T11:59:00Z", 0, []string{"hcm", "quiet", "mars"}},
		{"08:00 in New York", "2026-03-09T12:00:00Z", 0, []string{"hcm", "quiet", "mars", "ny", "ny2"}},
		{"Tuesday", "2026-03-10T06:00:00Z", 0, []string{"hcm", "quiet", "mars", "ny", "ny2"}},
	}
	for _, st := range steps {
		at, _ := time.Parse(time.RFC3339, st.utc)
		e.reports.mu.Lock()
		e.reports.fail = st.fail
		e.reports.mu.Unlock()
		look(t, e, s, trigger, at)
		if got := ob.recipients(); !slices.Equal(got, st.want) {
			t.Fatalf("%s: queued for %v, want %v", st.name, got, st.want)
		}
	}
	if f, q := testutil.ToFloat64(s.summaries.WithLabelValues("failed")), testutil.ToFloat64(s.summaries.WithLabelValues("queued")); f != 1 || q != 5 {
		t.Errorf("summaries counted: %v failed, %v queued; want 1 and 5", f, q)
	}
	ob.mu.Lock()
	defer ob.mu.Unlock()
	hcm, ny := zone(t, "Asia/Ho_Chi_Minh"), zone(t, "America/New_York")
	for _, d := range ob.ds {
		if d.Kind != Kind || d.ID != "2026-W10" {
			t.Errorf("%s: %s/%s, want %s/2026-W10", d.Recipient, d.Kind, d.ID, Kind)
		}
	}
	if d := ob.ds[0]; !slices.Equal(d.Channels, []string{recipients.FCM, recipients.SMS}) ||
		d.Text.Body != "Tuần trước: 3 lần mất điện, 47 phút chạy bằng pin, lâu nhất 31 phút tại Kho; điện lưới trong ngưỡng 99,2 %." ||
		d.Text.Title != "📊 Tuần UPS của bạn 02/03-08/03" || !d.At.Equal(time.Date(2026, 3, 9, 8, 0, 0, 0, hcm)) {
		t.Errorf("hcm's summary = %+v", d)
	}
	if d := ob.ds[1]; !slices.Equal(d.Channels, []string{recipients.FCM, recipients.APNS}) || !d.At.Equal(time.Date(2026, 3, 9, 9, 0, 0, 0, hcm)) {
		t.Errorf("quiet's summary: channels %v (want the default warning ones), due %s (want the end of its quiet hours)", d.Channels, d.At)
	}
	if d := ob.ds[3]; d.Text.Body != "Last week: 3 outages, 47 min on battery, longest 31 min at Office (hq); mains in band 99.2 %." {
		t.Errorf("ny's summary = %q", d.Text.Body)
	}
	// What was asked of the reporter: each unit of a fleet over the
	// account's week, a unit once per week however many accounts (ny and
	// ny2) have it in their summaries.
	for _, tt := range []struct {
		serial   ups.Serial
		from, to time.Time
		want     int
	}{
		{unitB, time.Date(2026, 3, 2, 0, 0, 0, 0, hcm), time.Date(2026, 3, 9, 0, 0, 0, 0, hcm), 2}, // failed, then done
		{unitA, time.Date(2026, 3, 2, 0, 0, 0, 0, ny), time.Date(2026, 3, 9, 0, 0, 0, 0, ny), 1},
		{unitC, time.Date(2026, 3, 2, 0, 0, 0, 0, ny), time.Date(2026, 3, 9, 0, 0, 0, 0, ny), 1},
		{unitD, time.Date(2026, 3, 2, 0, 0, 0, 0, hcm), time.Date(2026, 3, 9, 0, 0, 0, 0, hcm), 1},
		{unitD, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC), 1},
	} {
		if n := e.reports.times(tt.serial, tt.from, tt.to); n != tt.want {
			t.Errorf("the report of %s over %s .. %s was asked for %d times, want %d", tt.serial, tt.from, tt.to, n, tt.want)
		}
	}
}

// TestClaims: a claim another instance holds keeps this one from
// sending; one left "claimed" longer than ClaimTimeout by an instance
// that stopped is taken over, and "sent" is final.
func TestClaims(t *testing.T) {
	now := time.Date(2026, 3, 9, 1, 30, 0, 0, time.UTC) // 08:30 in Ho Chi Minh City
	e := newEnv(t, now)
	for _, id := range []string{"fresh", "stale", "sent"} {
		e.account(t, recipients.Account{ID: id, Language: "en", TimeZone: "Asia/Ho_Chi_Minh", Units: []ups.Serial{unitB}})
	}
	kv, err := e.js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: Bucket})
	if err != nil {
		t.Fatal(err)
	}
	for id, m := range map[string]marker{
		"fresh": {State: stateClaimed, By: "b", At: now.Add(-time.Minute)},
		"stale": {State: stateClaimed, By: "b", At: now.Add(-DefaultClaimTimeout - time.Second)},
		"sent":  {State: stateSent, By: "b", At: now.Add(-time.Hour)},
	} {
		b, _ := json.Marshal(m)
		if _, err := kv.Create(context.Background(), id+".2026-W10", b); err != nil {
			t.Fatal(err)
		}
	}
	ob := &outbox{}
	e.sender(t, e.js, ob, e.accounts, make(chan time.Time), "a")
	if got := ob.recipients(); !slices.Equal(got, []string{"stale"}) {
		t.Fatalf("queued for %v, want only the stale claim's account", got)
	}
	entry, err := kv.Get(context.Background(), "stale.2026-W10")
	if err != nil {
		t.Fatal(err)
	}
	var m marker
	if err := json.Unmarshal(entry.Value(), &m); err != nil || m.State != stateSent || m.By != "a" {
		t.Fatalf("stale claim after the takeover = %+v (%v), want sent by a", m, err)
	}
	// Erasing an account purges its claims (their keys name it), only
	// its own.
	s, err := New(e.js, Config{Accounts: e.accounts, Units: e.units, Reports: e.reports, Outbox: ob, Templates: e.tmpl})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Erase(context.Background(), "stale"); n != 1 || err != nil {
		t.Fatalf("Erase = %d, %v; want 1", n, err)
	}
	if _, err := kv.Get(context.Background(), "stale.2026-W10"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the erased account's claim: %v", err)
	}
	if _, err := kv.Get(context.Background(), "fresh.2026-W10"); err != nil {
		t.Errorf("another account's claim: %v", err)
	}
}

// phone is the FCM provider of the test's notifier: it records what it
// is given and accepts it. (The real FCM client stamps a message's TTL
// from the machine's clock, and the tests' Monday is not today.)
type phone struct {
	mu  sync.Mutex
	got []received
}

type received struct {
	to string
	m  notify.Message
}

func (p *phone) Channel() string { return recipients.FCM }
func (p *phone) MaxBatch() int   { return 500 }
func (p *phone) Send(_ context.Context, m notify.Message, to []string) []notify.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]notify.Result, len(to))
	for i, t := range to {
		p.got = append(p.got, received{t, m})
		out[i] = notify.Result{To: t, Outcome: notify.Delivered, ProviderResponse: "200"}
	}
	return out
}

func (p *phone) received() []received {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

// delivery is a real notifier on the test's NATS, with phone as FCM.
type delivery struct {
	phone *phone
	pipe  *pipeline.Pipeline
}

func (e *env) delivery(t *testing.T) *delivery {
	t.Helper()
	d := &delivery{phone: &phone{}}
	// The notifier's clock is the sender's: a summary due on the test's
	// Monday expires by that clock.
	var err error
	if d.pipe, err = pipeline.New(e.js, pipeline.Config{Units: e.units, Recipients: e.accounts, Templates: e.tmpl, FCM: d.phone,
		InitialBackoff: 50 * time.Millisecond, Now: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.pipe.Run(ctx); err != nil {
			t.Errorf("notifier: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	wait.For(t, "the notifier", func() bool {
		select {
		case <-d.pipe.Ready():
			return true
		default:
			return false
		}
	})
	return d
}

// settle waits until the FCM channel's outbox is drained and acked: every
// request the notifier will make has then been made.
func (e *env) settle(t *testing.T) {
	t.Helper()
	wait.For(t, "the fcm outbox to drain", func() bool {
		cons, err := e.js.Consumer(context.Background(), pipeline.OutboxStream, pipeline.SenderConsumerPrefix+recipients.FCM)
		if err != nil {
			return false
		}
		info, err := cons.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

// byToken counts the summaries the phone got per token.
func byToken(rs []received) map[string]int {
	out := map[string]int{}
	for _, r := range rs {
		if r.m.Data["kind"] == Kind {
			out[r.to]++
		}
	}
	return out
}

// TestOnceAcrossRestart runs a sender, lets it queue the week's
// summaries, stops it and starts another on the same NATS with the same
// clock (and looks once more): through the real notifier each
// subscribed account's phone gets exactly one summary, in its language;
// the opted-out account's gets none.
func TestOnceAcrossRestart(t *testing.T) {
	now := time.Date(2026, 3, 9, 1, 30, 0, 0, time.UTC) // Monday 08:30 in Ho Chi Minh City
	e := newEnv(t, now)
	e.account(t, recipients.Account{ID: "lan", Language: "vi", TimeZone: "Asia/Ho_Chi_Minh", Units: []ups.Serial{unitB}}, "tok-lan")
	e.account(t, recipients.Account{ID: "an", Language: "en", TimeZone: "Asia/Ho_Chi_Minh", Role: recipients.RoleManager,
		Sites: []string{"hq"}}, "tok-an")
	e.account(t, recipients.Account{ID: "minh", Language: "en", TimeZone: "Asia/Ho_Chi_Minh", Units: []ups.Serial{unitD},
		Preferences: recipients.Preferences{WeeklyReportOff: true}}, "tok-minh")
	d := e.delivery(t)

	first, stop := e.sender(t, e.js, d.pipe, e.accounts, make(chan time.Time), "a")
	if first.Queued() != 2 {
		t.Fatalf("first run queued %d, want 2", first.Queued())
	}
	stop()
	_, js2 := bustest.Connect(t, e.ns)
	trigger := make(chan time.Time)
	second, _ := e.sender(t, js2, d.pipe, e.accounts, trigger, "b")
	look(t, e, second, trigger, now.Add(time.Minute))
	if second.Queued() != 0 {
		t.Fatalf("the run after the restart queued %d, want 0", second.Queued())
	}
	e.settle(t)
	reqs := d.phone.received()
	if got := byToken(reqs); len(got) != 2 || got["tok-lan"] != 1 || got["tok-an"] != 1 {
		t.Fatalf("summaries per token = %v, want one each for lan and an, none for minh", got)
	}
	for _, r := range reqs {
		want := map[string]string{
			"tok-lan": "Tuần trước: 3 lần mất điện, 47 phút chạy bằng pin, lâu nhất 31 phút tại Kho; điện lưới trong ngưỡng 99,2 %.",
			"tok-an":  "Last week: 3 outages, 47 min on battery, longest 31 min at Office (hq); mains in band 99.2 %.",
		}[r.to]
		if r.m.Body != want {
			t.Errorf("%s got %q, want %q", r.to, r.m.Body, want)
		}
	}
	ds, err := d.pipe.Deliveries(context.Background(), Kind+"/lan/2026-W10")
	if err != nil || len(ds) != 1 || ds[0].Outcome != "delivered" {
		t.Fatalf("lan's summary in the audit: %+v, %v", ds, err)
	}
}

// TestTwoInstances: two senders on their own connections look at the
// same Monday at once; the claim decides, and each account gets one
// summary.
func TestTwoInstances(t *testing.T) {
	now := time.Date(2026, 3, 9, 1, 30, 0, 0, time.UTC)
	e := newEnv(t, now)
	for i := range 6 {
		e.account(t, recipients.Account{ID: fmt.Sprintf("acct%d", i), Language: "en", TimeZone: "Asia/Ho_Chi_Minh",
			Units: []ups.Serial{unitB}}, fmt.Sprintf("tok-%d", i))
	}
	d := e.delivery(t)
	ns := e.ns
	senders := make([]*Sender, 2)
	for i := range senders {
		_, js := bustest.Connect(t, ns)
		senders[i], _ = e.run(t, js, d.pipe, e.accounts, make(chan time.Time), fmt.Sprint(i))
	}
	wait.For(t, "both senders' first look", func() bool { return senders[0].Checks() >= 1 && senders[1].Checks() >= 1 })
	if n := senders[0].Queued() + senders[1].Queued(); n != 6 {
		t.Fatalf("queued %d + %d, want 6 together", senders[0].Queued(), senders[1].Queued())
	}
	e.settle(t)
	got := byToken(d.phone.received())
	for i := range 6 {
		if n := got[fmt.Sprintf("tok-%d", i)]; n != 1 {
			t.Errorf("tok-%d got %d summaries, want 1", i, n)
		}
	}
}
