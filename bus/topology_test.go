package bus_test

import (
	"testing"
	"time"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/bus/bustest"
)

func TestAlertSubject(t *testing.T) {
	s := bus.AlertSubject("123456789012", "on_battery")
	if s != "upswatch.alerts.123456789012.on_battery" {
		t.Fatalf("AlertSubject = %q", s)
	}
	for subj, want := range map[string]string{s: "123456789012", "upswatch.alerts.1234567890123456": "1234567890123456", "upswatch.alerts.": ""} {
		if got := bus.AlertSubjectSerial(subj); got != want {
			t.Errorf("AlertSubjectSerial(%q) = %q, want %q", subj, got, want)
		}
	}
}

// The notifier finds ALERTS (creating it with the defaults when it starts
// first) and never changes the limits the rule engine, its owner, set.
func TestAlertsStream(t *testing.T) {
	_, _, js := bustest.Server(t)
	ctx := t.Context()
	s, err := bus.FindAlertsStream(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.MaxAge != bus.DefaultAlertsMaxAge || len(c.Subjects) != 1 || c.Subjects[0] != bus.AlertsSubjectPrefix+">" {
		t.Fatalf("created %+v", c)
	}
	if _, err := bus.EnsureAlertsStream(ctx, js, 30*24*time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	if s, err = bus.FindAlertsStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != 30*24*time.Hour {
		t.Fatalf("MaxAge %v after FindAlertsStream, want the owner's 720h", info.Config.MaxAge)
	}
}
