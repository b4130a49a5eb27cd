package app

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/servetest"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/store/recorder"
)

// startSupervised runs an instance with policy and returns once its HTTP
// API is up, ready or not.
func startSupervised(t *testing.T, c config.Config, policy retryPolicy) *instance {
	t.Helper()
	a := newApp(t, c)
	a.retry = policy
	return run(t, c, a, servetest.Options{Started: true})
}

// readiness returns /readyz's status code and its component states.
func (in *instance) readiness() (int, map[string]string) {
	in.t.Helper()
	code, body := in.do("GET", "/readyz", nil, nil)
	var states map[string]string
	if err := json.Unmarshal([]byte(body), &states); err != nil {
		in.t.Fatalf("readyz body %q: %v", body, err)
	}
	return code, states
}

// TestFailedComponentIsRetried: a component whose setup fails on the bus
// is reported not ready by /readyz and run again with backoff; once the
// cause is removed it becomes ready and so does the instance. A cause
// that stays makes Run return an error naming the component.
func TestFailedComponentIsRetried(t *testing.T) {
	t.Setenv(KeysEnv, "")
	fast := retryPolicy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Healthy: time.Minute, GiveUpAfter: time.Hour}
	// squatAlerts makes a stream own the alert subjects, so neither the
	// rule engine nor the notifier can create the ALERTS stream.
	squatAlerts := func(t *testing.T, js jetstream.JetStream) func() {
		ctx := context.Background()
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SQUATTER", Subjects: []string{"upswatch.alerts.>"}}); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := js.DeleteStream(ctx, "SQUATTER"); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name string
		// breakIt sets the cause up before serve starts and returns its fix.
		breakIt      func(t *testing.T, js jetstream.JetStream) func()
		notReady     []string // readyz names
		restarted    string   // supervisor name
		giveUpAfter  time.Duration
		wantRunError string
	}{
		{name: "rules and notify: the alert subjects are taken", breakIt: squatAlerts,
			notReady: []string{"rules", "notify"}, restarted: "rules"},
		{name: "history: a consumer of another shape holds the recorder's name",
			breakIt: func(t *testing.T, js jetstream.JetStream) func() {
				ctx := context.Background()
				if _, _, err := bus.EnsureReadingsStream(ctx, js, bus.StreamConfig{Partitions: 4, Replicas: 1}); err != nil {
					t.Fatal(err)
				}
				if _, err := js.CreateConsumer(ctx, bus.ReadingsStream, jetstream.ConsumerConfig{
					Durable: recorder.Durable, AckPolicy: jetstream.AckNonePolicy}); err != nil {
					t.Fatal(err)
				}
				return func() {
					if err := js.DeleteConsumer(ctx, bus.ReadingsStream, recorder.Durable); err != nil {
						t.Fatal(err)
					}
				}
			},
			notReady: []string{"history"}, restarted: "recorder"},
		{name: "a cause that stays stops the daemon", breakIt: squatAlerts, giveUpAfter: time.Second,
			wantRunError: " failing for "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url := natsServer(t)
			_, js := bustest.Dial(t, url)
			fix := tc.breakIt(t, js)
			c := testConfig(t, t.TempDir())
			c.NATS.URL = url
			c.Keys.File = writeKeyring(t)
			policy := fast
			if tc.giveUpAfter > 0 {
				policy.GiveUpAfter = tc.giveUpAfter
			}
			in := startSupervised(t, c, policy)
			if tc.wantRunError != "" {
				err, ok := in.Exited(30 * time.Second)
				if !ok {
					t.Fatal("Run did not return while a component kept failing")
				}
				if err == nil || !strings.Contains(err.Error(), tc.wantRunError) {
					t.Fatalf("Run = %v, want an error containing %q", err, tc.wantRunError)
				}
				return
			}
			restarts := `upswatch_component_restarts_total{component="` + tc.restarted + `"}`
			wait.Within(t, 10*time.Second, "the failed component run again twice", func() bool { return in.metric(restarts) >= 2 })
			code, states := in.readiness()
			if code != 503 {
				t.Fatalf("readyz %d %v while the cause stays, want 503", code, states)
			}
			for _, name := range tc.notReady {
				if states[name] != "not ready" {
					t.Fatalf("readyz %v: %s is not reported not ready", states, name)
				}
			}
			fix()
			in.waitReady()
			_, states = in.readiness()
			for name, st := range states {
				if st != "ready" {
					t.Fatalf("after the fix, %s is %s", name, st)
				}
			}
		})
	}
}
