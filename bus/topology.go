package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The streams, their subjects and the KV buckets outside READINGS and
// ALERT_ACTIONS (bus.go). Each is created by the component that owns it;
// the names live here so that every component, the docs and the tests
// agree on them.
const (
	// AlertsStream holds the rule engine's alert events, on
	// AlertsSubjectPrefix + <serial>.<rule>: the durable alert timeline and
	// the notifier's input.
	AlertsStream        = "ALERTS"
	AlertsSubjectPrefix = "upswatch.alerts."
	// DefaultAlertsMaxAge is how long ALERTS keeps events by default.
	DefaultAlertsMaxAge = 400 * 24 * time.Hour
	// RuleStateBucket holds each unit's rule state (rules.UnitState),
	// keyed by serial; ActiveAlertsBucket what is firing now, keyed by
	// <serial>.<rule>.
	RuleStateBucket    = "upswatch_rule_state"
	ActiveAlertsBucket = "upswatch_alerts_active"

	// NotifyOutboxStream holds the notifications accepted and not yet sent,
	// on NotifyOutboxSubjectPrefix + <channel> (work queue).
	NotifyOutboxStream        = "NOTIFY_OUTBOX"
	NotifyOutboxSubjectPrefix = "upswatch.notify.outbox."
	// NotifyAuditStream holds every delivery attempt, on
	// NotifyAuditSubjectPrefix + <serial>.<rule>.<start ms>.
	NotifyAuditStream        = "NOTIFY_AUDIT"
	NotifyAuditSubjectPrefix = "upswatch.notify.audit."
	// NotifyLogBucket is the notification log: (recipient, channel,
	// event) -> queued, delivered or failed.
	NotifyLogBucket = "upswatch_notify_log"

	// UnitsBucket is the registry of units, keyed by serial;
	// RevocationsBucket the revoked device certificates, by serial.
	UnitsBucket       = "upswatch_units"
	RevocationsBucket = "upswatch_revoked"
	// RecipientsBucket holds the accounts: preferences, sealed personal
	// records, API tokens, the email index.
	RecipientsBucket = "upswatch_recipients"
	// IngestLeasesBucket holds one lease per ingest MQTT client id.
	IngestLeasesBucket = "upswatch_ingest_leases"
	// LoginsBucket and SessionsBucket are the web console's sign-in
	// secrets and sessions.
	LoginsBucket   = "upswatch_logins"
	SessionsBucket = "upswatch_sessions"
	// LoginFailuresBucket is the console's failed sign-in budget shared by
	// every instance: a GCRA arrival time per SHA-256 of an account or
	// client address, gone once idle (the bucket's MaxAge).
	LoginFailuresBucket = "upswatch_login_failures"
	// AreasBucket holds the site-outage evaluator's area states and
	// verdicts; BatteryBucket each unit's battery state.
	AreasBucket   = "upswatch_areas"
	BatteryBucket = "upswatch_battery"
	// WeeklyBucket holds the weekly summaries claimed or sent, keyed by
	// <account>.<ISO week>: a create decides which instance sends.
	WeeklyBucket = "upswatch_weekly"
)

// AlertSubject is the subject of an alert event of (serial, rule).
func AlertSubject(serial, rule string) string { return AlertsSubjectPrefix + serial + "." + rule }

// AlertSubjectSerial is the serial of an alert event's subject.
func AlertSubjectSerial(subject string) string {
	s := strings.TrimPrefix(subject, AlertsSubjectPrefix)
	serial, _, _ := strings.Cut(s, ".")
	return serial
}

// alertsStreamConfig is ALERTS' configuration.
func alertsStreamConfig(maxAge time.Duration, replicas int) jetstream.StreamConfig {
	if maxAge <= 0 {
		maxAge = DefaultAlertsMaxAge
	}
	return jetstream.StreamConfig{
		Name:        AlertsStream,
		Description: "alert events: the durable alert timeline and the notifier's input",
		Subjects:    []string{AlertsSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      maxAge,
		Duplicates:  10 * time.Minute,
		Replicas:    replicas,
	}
}

// EnsureAlertsStream creates ALERTS or updates its limits (maxAge 0:
// DefaultAlertsMaxAge). The rule engine, its owner, calls it.
//
// A stream already as wanted is left alone: every retry of its owner
// would otherwise send an update, and an update racing with a consumer
// being created on the stream is a data race inside nats-server (seen
// under -race in the embedded server).
func EnsureAlertsStream(ctx context.Context, js jetstream.JetStream, maxAge time.Duration, replicas int) (jetstream.Stream, error) {
	want := alertsStreamConfig(maxAge, replicas)
	if s, err := js.Stream(ctx, AlertsStream); err == nil {
		c := s.CachedInfo().Config
		if c.Description == want.Description && slices.Equal(c.Subjects, want.Subjects) && c.Storage == want.Storage &&
			c.Retention == want.Retention && c.MaxAge == want.MaxAge && c.Duplicates == want.Duplicates &&
			c.Replicas == want.Replicas {
			return s, nil
		}
	}
	s, err := js.CreateOrUpdateStream(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", AlertsStream, err)
	}
	return s, nil
}

// FindAlertsStream returns ALERTS, creating it with the defaults when it
// does not exist yet, and never changes the limits its owner set: for the
// notifier, which may start before the rule engine.
func FindAlertsStream(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, AlertsStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, alertsStreamConfig(0, replicas))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, AlertsStream)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", AlertsStream, err)
	}
	return s, nil
}
