// Package bus is upswatch's NATS JetStream backbone: the embedded server,
// the connection, and the streams, subjects and buckets every component
// agrees on (the names are defined here, in bus.go and topology.go; each
// component creates what it owns).
//
// Streams and their subjects (the seams between components):
//
//	READINGS       upswatch.readings.<p>            batches of readings of partition p,
//	                                                ups.AppendBatch; p = ups.Partition(serial, P)
//	                                                (ingest -> rules engine, history recorder)
//	ALERTS         upswatch.alerts.<serial>.<rule>  alert events (rules engine -> notifier,
//	                                                alert actions, timeline)
//	NOTIFY_OUTBOX  upswatch.notify.outbox.<channel> notifications to send (work queue)
//	NOTIFY_AUDIT   upswatch.notify.audit.<serial>.<rule>.<start ms>  delivery attempts
//	ALERT_ACTIONS  upswatch.alertactions.<serial>.<rule>  acknowledgements and silences, audited
//
// KV buckets: upswatch_units (registry), upswatch_revoked (revoked device
// certificates), upswatch_recipients (accounts), upswatch_rule_state
// (rule state per unit), upswatch_alerts_active (alerts firing now),
// upswatch_alert_actions (live acks and silences), upswatch_notify_log
// (notification log), upswatch_ingest_leases (ingest client leases),
// upswatch_logins and upswatch_sessions (web console),
// upswatch_login_failures (the console's failed sign-in budget, shared by
// every instance), upswatch_areas (site outages), upswatch_battery
// (battery state per unit), upswatch_weekly (weekly summaries claimed or
// sent).
//
// The READINGS stream's partition count P is stored in its metadata and
// never changes for the stream's life: a unit always maps to one
// partition, so its readings stay in order and one consumer can own a
// partition's rule evaluation.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of the streams, buckets and subjects.
const (
	ReadingsStream        = "READINGS"
	ReadingsSubjectPrefix = "upswatch.readings."
	partitionsMetadataKey = "upswatch.partitions"

	// AlertActionsBucket holds what people set on alerts: the live
	// acknowledgements (ack.<serial>.<rule>) and silences
	// (silence.<serial>.<rule>); see package actions.
	AlertActionsBucket = "upswatch_alert_actions"
	// AlertActionsStream is the audit of those actions, on subjects
	// AlertActionsSubjectPrefix + <serial>.<rule>.
	AlertActionsStream        = "ALERT_ACTIONS"
	AlertActionsSubjectPrefix = "upswatch.alertactions."
	// AlertActionsConsumer is the durable consumer of the ALERTS stream
	// that clears an acknowledgement when its alert resolves.
	AlertActionsConsumer = "alert-actions"
)

// ReadingsSubject is the subject of partition p.
func ReadingsSubject(p int) string { return ReadingsSubjectPrefix + strconv.Itoa(p) }

// ErrPartitionsChanged is returned when the configured partition count
// differs from the one the existing stream was created with.
var ErrPartitionsChanged = errors.New("nats.partitions differs from the existing stream")

// DefaultPartitions is the partition count of a readings stream created
// without one configured. Each partition costs every reader of the
// stream (recorder, rule engine, battery tracker) a durable consumer
// whose state the server rewrites up to 10 times a second, and the
// ingest a batch of its own; four keep the batches large on a small box
// and still let four instances share the rule engine.
const DefaultPartitions = 4

// StreamConfig sizes the readings stream.
type StreamConfig struct {
	// Partitions: 0 keeps the existing stream's count, or creates the
	// stream with DefaultPartitions.
	Partitions int
	Replicas   int
	MaxAge     time.Duration
	MaxBytes   int64
}

// EnsureReadingsStream creates the readings stream or updates its limits,
// refusing to change its partition count. It returns the stream and its
// partition count.
func EnsureReadingsStream(ctx context.Context, js jetstream.JetStream, c StreamConfig) (jetstream.Stream, int, error) {
	s, err := js.Stream(ctx, ReadingsStream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if c.Partitions == 0 {
			c.Partitions = DefaultPartitions
		}
		s, err = js.CreateStream(ctx, readingsConfig(c))
		if err != nil {
			return nil, 0, fmt.Errorf("create stream %s: %w", ReadingsStream, err)
		}
		return s, c.Partitions, nil
	case err != nil:
		return nil, 0, fmt.Errorf("look up stream %s: %w", ReadingsStream, err)
	}
	got := s.CachedInfo().Config.Metadata[partitionsMetadataKey]
	n, err := strconv.Atoi(got)
	if err != nil || n < 1 {
		return nil, 0, fmt.Errorf("stream %s has no valid partition count (%q)", ReadingsStream, got)
	}
	if c.Partitions != 0 && c.Partitions != n {
		return nil, 0, fmt.Errorf("%w: stream has %d, config says %d (the partition count is fixed for the stream's life)",
			ErrPartitionsChanged, n, c.Partitions)
	}
	c.Partitions = n
	s, err = js.UpdateStream(ctx, readingsConfig(c))
	if err != nil {
		return nil, 0, fmt.Errorf("update stream %s: %w", ReadingsStream, err)
	}
	return s, n, nil
}

func readingsConfig(c StreamConfig) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        ReadingsStream,
		Description: "UPS readings, batched per partition",
		Subjects:    []string{ReadingsSubjectPrefix + "*"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		// DiscardNew: when the stream is full, refuse new batches (the
		// ingest keeps retrying and stops acking devices, so the broker
		// and devices buffer) rather than delete old batches nobody has
		// stored yet.
		Discard:    jetstream.DiscardNew,
		Duplicates: 2 * time.Minute,
		Replicas:   c.Replicas,
		Metadata:   map[string]string{partitionsMetadataKey: strconv.Itoa(c.Partitions)},
	}
}

// PartitionsOf reads the partition count of an existing readings stream.
func PartitionsOf(ctx context.Context, js jetstream.JetStream) (int, error) {
	s, err := js.Stream(ctx, ReadingsStream)
	if err != nil {
		return 0, fmt.Errorf("look up stream %s: %w", ReadingsStream, err)
	}
	n, err := strconv.Atoi(s.CachedInfo().Config.Metadata[partitionsMetadataKey])
	if err != nil {
		return 0, fmt.Errorf("stream %s has no valid partition count: %w", ReadingsStream, err)
	}
	return n, nil
}

// ConnectOptions are the common options of every upswatch NATS
// connection: reconnect forever, and log state changes.
func ConnectOptions(name string, log *slog.Logger) []nats.Option {
	return []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}
}
