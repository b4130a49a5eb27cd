package live

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

const a, b = ups.Serial("111111111111"), ups.Serial("222222222222")

type units map[ups.Serial]string

func (u units) Lookup(s ups.Serial) (registry.Unit, bool) {
	site, ok := u[s]
	return registry.Unit{Serial: s, Site: site}, ok
}

func readingJSON(r *ups.Reading) map[string]any {
	out := map[string]any{"serial": r.Serial, "time": r.Time.String()}
	if r.HasStatus {
		out["ups.status"] = r.Status.Raw
	}
	for _, m := range r.Metrics {
		out[m.Name] = m.Value
	}
	return out
}

func startHub(t *testing.T, buffer int) (*Hub, *nats.Conn, context.CancelFunc) {
	t.Helper()
	_, nc, _ := bustest.Server(t)
	h, err := New(Config{Conn: nc, Units: units{a: "hq", b: "branch"}, ReadingJSON: readingJSON, Buffer: buffer})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := h.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-h.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("hub not ready")
	}
	return h, nc, cancel
}

func reading(s ups.Serial, status string, at time.Time, charge float64) ups.Reading {
	var r ups.Reading
	r.Serial, r.Time, r.Status, r.HasStatus = s, at, ups.ParseStatus(status), true
	r.SetNum("battery.charge", charge)
	return r
}

func publishAlert(t *testing.T, nc *nats.Conn, s ups.Serial, kind rules.EventKind) {
	t.Helper()
	body, _ := json.Marshal(rules.Event{Kind: kind, Rule: "on_battery", Serial: s, At: time.Now(), Fingerprint: string(s) + "/on_battery/1"})
	if err := nc.Publish("upswatch.alerts."+string(s)+".on_battery", body); err != nil {
		t.Fatal(err)
	}
}

// next returns the client's next event, failing after 10 s.
func next(t *testing.T, c *Client) Event {
	t.Helper()
	select {
	case ev := <-c.Events():
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return Event{}
	}
}

// TestHubFansOutToWhoMaySee: each client gets exactly the events of the
// units its filter accepts, and of a batch only the latest reading of
// each unit. Once the admin's client has every event, and a call that
// takes the hub's lock has returned, every fan-out is over: what the
// other clients hold is all they will ever get of these events.
func TestHubFansOutToWhoMaySee(t *testing.T) {
	h, nc, _ := startHub(t, 16)
	clients := []struct {
		name string
		see  func(registry.Unit) bool
		want []string // name:serial[:status], in any order (readings and alerts come by two subscriptions)
	}{
		{"admin", func(registry.Unit) bool { return true },
			[]string{"alert:111111111111", "alert:222222222222", "reading:111111111111:OB DISCHRG", "reading:222222222222:OL"}},
		{"manager of hq", func(u registry.Unit) bool { return u.Site == "hq" },
			[]string{"alert:111111111111", "reading:111111111111:OB DISCHRG"}},
		{"owner of b", func(u registry.Unit) bool { return u.Serial == b },
			[]string{"alert:222222222222", "reading:222222222222:OL"}},
		{"nobody", func(registry.Unit) bool { return false }, nil},
	}
	subs := make([]*Client, len(clients))
	for i, c := range clients {
		var err error
		if subs[i], err = h.Subscribe(c.see); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	batch := ups.AppendBatch(nil, []ups.Reading{
		reading(a, "OL", t0.Add(-time.Second), 100), reading(a, "OB DISCHRG", t0, 97), reading(b, "OL", t0, 100),
		{Serial: "333333333333", Time: t0, HasStatus: true, Status: ups.ParseStatus("OB")}, // not registered
	})
	if err := nc.Publish("upswatch.readings.3", batch); err != nil {
		t.Fatal(err)
	}
	publishAlert(t, nc, a, rules.Firing)
	publishAlert(t, nc, b, rules.Firing)
	got := make([][]string, len(clients))
	for range clients[0].want {
		got[0] = append(got[0], describe(t, next(t, subs[0]), t0))
	}
	h.Clients() // waits out a fan-out still holding the lock
	for i, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			for len(got[i]) < len(c.want) {
				got[i] = append(got[i], describe(t, next(t, subs[i]), t0))
			}
			if n := len(subs[i].Events()); n != 0 {
				t.Errorf("%d events more than %v", n, c.want)
			}
			slices.Sort(got[i])
			if !slices.Equal(got[i], c.want) {
				t.Errorf("events %v, want %v", got[i], c.want)
			}
		})
	}
}

// describe names an event name:serial[:status] and checks a reading's ts.
func describe(t *testing.T, ev Event, t0 time.Time) string {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatal(err)
	}
	out := ev.Name + ":" + string(ev.Serial)
	if ev.Name == Reading {
		values, _ := d["values"].(map[string]any)
		out += ":" + values["ups.status"].(string)
		if d["ts"] != float64(t0.UnixMilli()) || d["serial"] != string(ev.Serial) || values["serial"] != nil || values["time"] != nil {
			t.Errorf("reading %s: want ts %d, the serial, values without serial and time", ev.Data, t0.UnixMilli())
		}
	}
	return out
}

// TestHubDropsSlowClient: a client that reads nothing is dropped once its
// buffer is full, and the others get every event.
func TestHubDropsSlowClient(t *testing.T) {
	h, nc, cancel := startHub(t, 2)
	all := func(registry.Unit) bool { return true }
	slow, err := h.Subscribe(all)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := h.Subscribe(all)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		publishAlert(t, nc, a, rules.EventKind(i%4))
		if ev := next(t, fast); ev.Name != Alert {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	select {
	case <-slow.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the slow client was not dropped")
	}
	if !slow.Dropped() || h.Clients() != 1 {
		t.Fatalf("dropped %v, %d clients left, want the fast one", slow.Dropped(), h.Clients())
	}
	// Stopping the hub ends the others, as not dropped, and refuses new
	// clients.
	cancel()
	select {
	case <-fast.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the hub's end did not end its clients")
	}
	if fast.Dropped() {
		t.Error("a client ended by shutdown reads as dropped")
	}
	if _, err := h.Subscribe(all); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after the end: %v, want ErrClosed", err)
	}
}
