package actions

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

func TestParseAlertID(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"123456789012/on_battery/1764000000000", "123456789012/on_battery/1764000000000", true},
		{"123456789012.on_battery.1764000000000", "123456789012/on_battery/1764000000000", true},
		{"1234567890123456/low_battery/0", "1234567890123456/low_battery/0", true},
		{"12345678901/on_battery/1", "", false},     // 11 digits
		{"123456789012/On-Battery/1", "", false},    // not a rule name
		{"123456789012/on_battery/-1", "", false},   // negative start
		{"123456789012/on_battery", "", false},      // no start
		{"123456789012/on_battery/1/x", "", false},  // too many parts
		{"123456789012.on_battery.1/x", "", false},  // mixed
		{"123456789012/on.battery/1", "", false},    // a dot in the rule
		{"123456789012/on_battery/12ab", "", false}, // start not a number
		{"", "", false},
	} {
		id, err := ParseAlertID(tt.in)
		if (err == nil) != tt.ok || (tt.ok && id.String() != tt.want) {
			t.Errorf("ParseAlertID(%q) = %v, %v; want %q ok=%v", tt.in, id, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidAlertID) {
			t.Errorf("ParseAlertID(%q): %v is not ErrInvalidAlertID", tt.in, err)
		}
	}
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestStore runs the actions on a real JetStream: each step's error (or
// none), then what Live, Silenced and History show.
func TestStore(t *testing.T) {
	ctx := context.Background()
	_, _, js := bustest.Server(t)
	clk := &clock{t: time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)}
	s, err := Open(ctx, js, Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := ParseAlertID("123456789012/on_battery/1000")
	id2, _ := ParseAlertID("123456789012/on_battery/2000") // the next outage
	lan, admin := Actor{Account: "lan"}, Actor{Admin: true}
	for _, st := range []struct {
		name string
		do   func() error
		want error
	}{
		{"unack with no ack", func() error { return s.Unack(ctx, id1, lan, "") }, ErrNotFound},
		{"reason too long", func() error { _, err := s.Ack(ctx, id1, lan, strings.Repeat("x", MaxReason+1)); return err }, ErrInvalid},
		{"ack", func() error { _, err := s.Ack(ctx, id1, lan, " generator starting "); return err }, nil},
		{"unack another instance", func() error { return s.Unack(ctx, id2, lan, "") }, ErrNotFound},
		{"silence too long", func() error { _, err := s.Silence(ctx, id1, admin, MaxSilence+time.Second, ""); return err }, ErrInvalid},
		{"silence zero", func() error { _, err := s.Silence(ctx, id1, admin, 0, ""); return err }, ErrInvalid},
		{"silence", func() error { _, err := s.Silence(ctx, id1, admin, time.Hour, "works"); return err }, nil},
	} {
		if err := st.do(); !errors.Is(err, st.want) || (st.want == nil && err != nil) {
			t.Fatalf("%s: %v, want %v", st.name, err, st.want)
		}
		clk.add(time.Second)
	}
	acks, silences, err := s.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := acks[id1.String()]; len(acks) != 1 || a.By != lan || a.Reason != "generator starting" {
		t.Errorf("acks = %+v", acks)
	}
	if sl := silences["123456789012/on_battery"]; len(silences) != 1 || sl.By != admin || sl.Reason != "works" {
		t.Errorf("silences = %+v", silences)
	}
	// The silence covers the rule's next instance too, until it expires.
	for _, tt := range []struct {
		rule string
		at   time.Duration
		want bool
	}{
		{"on_battery", 0, true},
		{"on_battery", 59 * time.Minute, true},
		{"on_battery", time.Hour, false},
		{"low_battery", 0, false},
	} {
		_, got, err := s.Silenced(ctx, "123456789012", tt.rule, clk.now().Add(tt.at))
		if err != nil || got != tt.want {
			t.Errorf("Silenced(%s, +%s) = %v, %v; want %v", tt.rule, tt.at, got, err, tt.want)
		}
	}
	clk.add(time.Hour)
	if _, silences, _ := s.Live(ctx); len(silences) != 0 {
		t.Errorf("an expired silence is live: %+v", silences)
	}
	if err := s.Unsilence(ctx, id1, admin, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("lifting an expired silence: %v, want ErrNotFound", err)
	}
	if err := s.Unack(ctx, id1, admin, "handled"); err != nil {
		t.Fatal(err)
	}
	recs, err := s.History(ctx, "123456789012", time.Time{}, clk.now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Action+" by "+r.By.Account+"|"+r.Reason)
	}
	want := []string{"acknowledged by lan|generator starting", "silenced by |works", "unacknowledged by |handled"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("history = %v, want %v", got, want)
	}
	if recs, err := s.History(ctx, "210987654321", time.Time{}, clk.now()); err != nil || len(recs) != 0 {
		t.Errorf("another unit's history = %v, %v", recs, err)
	}
}

// TestRunClearsAckOnResolve: a resolved alert's acknowledgement goes (and
// the audit says so); a resolve of an older instance leaves the ack of
// the current one alone.
func TestRunClearsAckOnResolve(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	_, _, js := bustest.Server(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ALERTS", Subjects: []string{"upswatch.alerts.>"}}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, js, Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("not consuming alerts within 10s")
	}
	a1, _ := ParseAlertID("123456789012/on_battery/1000")
	b2, _ := ParseAlertID("210987654321/on_battery/2000")
	for _, id := range []AlertID{a1, b2} {
		if _, err := s.Ack(ctx, id, Actor{Account: "lan"}, "seen"); err != nil {
			t.Fatal(err)
		}
	}
	resolve := func(fingerprint string, serial ups.Serial) {
		b, _ := json.Marshal(rules.Event{Kind: rules.Resolved, Rule: "on_battery", Serial: serial, Fingerprint: fingerprint, At: time.Now()})
		if _, err := js.Publish(ctx, "upswatch.alerts."+string(serial)+".on_battery", b); err != nil {
			t.Fatal(err)
		}
	}
	resolve("210987654321/on_battery/1000", "210987654321") // an older instance of B
	resolve(a1.String(), a1.Serial)
	// The consumer handles the events in order: once A's ack is gone,
	// B's older resolve was handled before it.
	var acks map[string]Ack
	wait.Within(t, 10*time.Second, "A's ack cleared", func() bool {
		var err error
		if acks, _, err = s.Live(ctx); err != nil {
			t.Fatal(err)
		}
		_, ok := acks[a1.String()]
		return !ok
	})
	if _, ok := acks[b2.String()]; !ok || len(acks) != 1 {
		t.Fatalf("acks = %+v, want B's only", acks)
	}
	recs, err := s.History(ctx, a1.Serial, time.Time{}, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[1].Action != AckCleared || recs[1].AlertID != a1.String() || recs[1].By != (Actor{}) {
		t.Errorf("history of A = %+v, want acknowledged then ack_cleared", recs)
	}
}

// TestEraseActor: a deleted account's actions stay in force and in the
// audit but name no one and keep no reason; others' are untouched.
func TestEraseActor(t *testing.T) {
	ctx := context.Background()
	_, _, js := bustest.Server(t)
	s, err := Open(ctx, js, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a1, _ := ParseAlertID("123456789012/on_battery/1000")
	b1, _ := ParseAlertID("210987654321/on_battery/1000")
	lan, minh := Actor{Account: "lan"}, Actor{Account: "minh"}
	if _, err := s.Ack(ctx, a1, lan, "lan's words"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Silence(ctx, a1, lan, time.Hour, "lan's silence"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ack(ctx, b1, minh, "minh's words"); err != nil {
		t.Fatal(err)
	}
	n, err := s.EraseActor(ctx, "lan")
	if err != nil || n != 4 { // ack and silence, live and audited
		t.Fatalf("EraseActor = %d, %v; want 4", n, err)
	}
	acks, silences, err := s.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := acks[a1.String()]; a.By != (Actor{Erased: true}) || a.Reason != "" {
		t.Errorf("lan's ack = %+v, want kept, naming no one", a)
	}
	if sl, ok := silences["123456789012/on_battery"]; !ok || sl.By != (Actor{Erased: true}) || sl.Reason != "" {
		t.Errorf("lan's silence = %+v, %v; want kept in force, naming no one", sl, ok)
	}
	if a := acks[b1.String()]; a.By != minh || a.Reason != "minh's words" {
		t.Errorf("minh's ack = %+v, want untouched", a)
	}
	for _, serial := range []ups.Serial{a1.Serial, b1.Serial} {
		recs, err := s.History(ctx, serial, time.Time{}, time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.By.Account == "lan" || strings.Contains(r.Reason, "lan") {
				t.Errorf("audit still names lan: %+v", r)
			}
		}
		if want := map[ups.Serial]int{a1.Serial: 2, b1.Serial: 1}[serial]; len(recs) != want {
			t.Errorf("audit of %s has %d records, want %d", serial, len(recs), want)
		}
	}
	// Nothing of lan's is left in the stream's messages.
	st, _ := js.Stream(ctx, "ALERT_ACTIONS")
	info, _ := st.Info(ctx)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err == nil && strings.Contains(string(m.Data), "lan") {
			t.Errorf("message %d still holds %s", seq, m.Data)
		}
	}
}

// TestSurvivesRestart: acknowledgements, silences and their audit are on
// disk with the NATS server: a restarted server still has them.
func TestSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	id, _ := ParseAlertID("123456789012/on_battery/1000")
	for round := range 2 {
		ns, err := bus.StartEmbedded(bus.EmbeddedOptions{StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		_, js := bustest.Connect(t, ns)
		s, err := Open(ctx, js, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			if _, err := s.Ack(ctx, id, Actor{Account: "lan"}, "seen"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Silence(ctx, id, Actor{Account: "lan"}, time.Hour, "works"); err != nil {
				t.Fatal(err)
			}
		} else {
			acks, _, err := s.Live(ctx)
			if err != nil || acks[id.String()].Reason != "seen" {
				t.Errorf("after restart: acks %+v, %v", acks, err)
			}
			if _, silenced, err := s.Silenced(ctx, id.Serial, id.Rule, time.Now()); err != nil || !silenced {
				t.Errorf("after restart: silenced %v, %v", silenced, err)
			}
			if recs, err := s.History(ctx, id.Serial, time.Time{}, time.Now().Add(time.Minute)); err != nil || len(recs) != 2 {
				t.Errorf("after restart: audit %+v, %v", recs, err)
			}
		}
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}
