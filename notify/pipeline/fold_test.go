package pipeline

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// foldsFunc is a Folds from a function of the how-many-th time it is
// asked about the event.
type foldsFunc struct {
	mu       sync.Mutex
	attempts []uint64
	fn       func(ev *rules.Event, attempt uint64) (bool, time.Duration)
}

func (f *foldsFunc) Fold(_ context.Context, ev *rules.Event, _ time.Duration) (bool, time.Duration, error) {
	f.mu.Lock()
	attempt := uint64(len(f.attempts) + 1)
	f.attempts = append(f.attempts, attempt)
	f.mu.Unlock()
	fold, wait := f.fn(ev, attempt)
	return fold, wait, nil
}

// What the pipeline does with a verdict on a unit alert, for the owner of
// the unit and the manager of its site, and with an area alert.
func TestFolding(t *testing.T) {
	const short = 50 * time.Millisecond
	tests := []struct {
		name string
		area string // set: the event is an area alert
		fn   func(ev *rules.Event, attempt uint64) (bool, time.Duration)
		// want: the tokens notified, once each
		want []string
	}{
		{"not folded: both", "", func(*rules.Event, uint64) (bool, time.Duration) { return false, 0 },
			[]string{"tok-manager", "tok-owner"}},
		{"folded: the owner only", "", func(*rules.Event, uint64) (bool, time.Duration) { return true, 0 },
			[]string{"tok-owner"}},
		{"no verdict yet, then not folded: both, once", "", func(_ *rules.Event, attempt uint64) (bool, time.Duration) {
			if attempt < 3 {
				return false, short
			}
			return false, 0
		}, []string{"tok-manager", "tok-owner"}},
		{"no verdict yet, then folded: the owner only, at once", "", func(_ *rules.Event, attempt uint64) (bool, time.Duration) {
			if attempt < 3 {
				return false, short
			}
			return true, 0
		}, []string{"tok-owner"}},
		{"held, then folded: the owner, once", "", func(_ *rules.Event, attempt uint64) (bool, time.Duration) {
			if attempt < 3 {
				return true, short
			}
			return true, 0
		}, []string{"tok-owner"}},
		{"held, then released: the owner at once, the manager after", "", func(_ *rules.Event, attempt uint64) (bool, time.Duration) {
			if attempt < 3 {
				return true, short
			}
			return false, 0
		}, []string{"tok-manager", "tok-owner"}},
		{"an area alert: the site's manager only", "hq", func(*rules.Event, uint64) (bool, time.Duration) { return false, 0 },
			[]string{"tok-manager"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, recipients.FCM)
			folds := &foldsFunc{fn: tc.fn}
			e.folds = folds
			e.owner(t, "en", allChannels(), recipients.Contacts{FCMTokens: []string{"tok-owner"}})
			e.manager(t, "tok-manager")
			e.start(t)
			ev := event(rules.Firing, "on_battery", rules.Warning, serial, time.Now().Add(-time.Minute))
			if tc.area != "" {
				ev.Rule, ev.Area, ev.Units = "site_outage", tc.area, []ups.Serial{serial, "123456789013", "123456789014"}
				ev.Values = append(ev.Values, rules.Value{Name: "area.units", Value: 3})
			}
			publish(t, e.js, ev, ev.DedupID())
			waitSettled(t, e.js)
			var got []string
			for _, r := range e.fcm.Requests() {
				got = append(got, r.Token)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("notified %v, want %v", got, tc.want)
			}
			// A wait was honoured: the event came back until its verdict.
			folds.mu.Lock()
			last := folds.attempts[len(folds.attempts)-1]
			folds.mu.Unlock()
			if _, wait := tc.fn(&ev, 1); wait > 0 && last != 3 {
				t.Errorf("last attempt %d, want 3 (each wait honoured)", last)
			}
			if tc.area != "" {
				if title := e.fcm.Requests()[0].Title; !strings.Contains(title, "3 units at site hq on battery since") {
					t.Errorf("area alert title %q", title)
				}
			}
		})
	}
}

// waitSettled waits until the intake (held events are unacked) and the
// FCM sender have nothing pending.
func waitSettled(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	wait.For(t, "the intake and the FCM sender with nothing pending", func() bool {
		for _, sc := range [][2]string{{AlertsStream, IntakeConsumer}, {OutboxStream, SenderConsumerPrefix + recipients.FCM}} {
			c, err := js.Consumer(context.Background(), sc[0], sc[1])
			if err != nil {
				return false
			}
			info, err := c.Info(context.Background())
			if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
				return false
			}
		}
		return true
	})
}

// A Firing whose area verdict is not stored yet goes to the unit's owner
// at once; the site manager's part waits for the verdict. Its Resolved,
// arriving meanwhile, must not overtake that part: taken first, the
// manager's restore found no notice of the Firing to follow and was
// dropped, and the manager then got "on battery" alone. The owner's
// restore goes at once; the manager's waits for the manager's Firing.
func TestResolvedWaitsForItsDeferredFiring(t *testing.T) {
	e := newEnv(t, recipients.FCM)
	released := make(chan struct{})
	e.folds = &foldsFunc{fn: func(ev *rules.Event, _ uint64) (bool, time.Duration) {
		if ev.Kind == rules.Firing {
			select {
			case <-released:
			default:
				return false, 20 * time.Millisecond // no verdict yet
			}
		}
		return false, 0
	}}
	e.owner(t, "en", allChannels(), recipients.Contacts{FCMTokens: []string{"tok-owner"}})
	e.manager(t, "tok-manager")
	e.start(t)
	at := time.Now().Add(-time.Minute)
	firing := event(rules.Firing, "on_battery", rules.Warning, serial, at)
	publish(t, e.js, firing, firing.DedupID())
	resolved := firing
	resolved.Kind, resolved.At, resolved.EndedAt = rules.Resolved, at.Add(20*time.Second), at.Add(20*time.Second)
	resolved.Duration = 20 * time.Second
	publish(t, e.js, resolved, resolved.DedupID())
	notified := func(token string) []string {
		var got []string
		for _, r := range e.fcm.Requests() {
			if r.Token == token {
				got = append(got, r.Title)
			}
		}
		// (The two go out in order from the intake; the sender sends
		// batches side by side, so the provider may see them either way.)
		slices.Sort(got)
		return got
	}
	bothNotices := func(got []string) bool {
		return len(got) == 2 && strings.Contains(got[0], "on battery") && strings.Contains(got[1], "restored")
	}
	// The owner has both while the manager's part of the Firing still
	// waits for its verdict.
	wait.For(t, "the owner notified of the outage and its end", func() bool { return bothNotices(notified("tok-owner")) })
	if got := notified("tok-manager"); len(got) != 0 {
		t.Fatalf("manager notified %q before the verdict", got)
	}
	close(released)
	waitSettled(t, e.js)
	if got := notified("tok-manager"); !bothNotices(got) {
		t.Errorf("manager notified %q, want on battery and power restored", got)
	}
	if got := notified("tok-owner"); !bothNotices(got) {
		t.Errorf("owner notified %q, want on battery and power restored, once each", got)
	}
}
