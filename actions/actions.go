// Package actions holds what people do to alerts: acknowledge one (who,
// when, why; cleared when the alert resolves) and silence the
// notifications of a unit's rule for a while. Both live in the NATS KV
// bucket bus.AlertActionsBucket, so any instance serves them and they
// survive restarts; every change is also recorded in the
// bus.AlertActionsStream audit stream.
//
// An acknowledgement belongs to one alert instance (its fingerprint
// serial/rule/start-ms): it is shown only while that instance fires, and
// Run deletes it when the instance resolves. A silence covers the unit's
// rule (every instance of it, as an Alertmanager silence matching serial
// and rule) until it expires or is lifted: a flapping unit re-firing the
// same rule does not page again within the duration someone chose.
//
// Records name the actor by account id only, never by name: a name is
// personal data that must go with the account, so readers resolve it when
// they show the record.
package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/internal/ready"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// Errors callers test with errors.Is.
var (
	ErrInvalidAlertID = errors.New("invalid alert id")
	ErrNotFound       = errors.New("no such acknowledgement or silence")
	ErrInvalid        = errors.New("invalid action")
)

// Actions recorded in the audit.
const (
	Acknowledged   = "acknowledged"
	Unacknowledged = "unacknowledged"
	// AckCleared: the alert resolved, which ended its acknowledgement.
	AckCleared = "ack_cleared"
	Silenced   = "silenced"
	Unsilenced = "unsilenced"
)

// MaxReason is the longest reason kept, in bytes.
const MaxReason = 500

// MaxSilence is the longest silence.
const MaxSilence = 30 * 24 * time.Hour

// Actor is who acted: an account, or the admin token (Admin with no
// Account). An empty actor is the system (AckCleared). Erased marks an
// account since deleted (EraseActor).
type Actor struct {
	Account string `json:"account,omitempty"`
	Admin   bool   `json:"admin,omitempty"`
	Erased  bool   `json:"erased,omitempty"`
}

// Ack is a live acknowledgement of one alert instance.
type Ack struct {
	AlertID string     `json:"alert_id"`
	Serial  ups.Serial `json:"serial"`
	Rule    string     `json:"rule"`
	By      Actor      `json:"by"`
	At      time.Time  `json:"at"`
	Reason  string     `json:"reason"`
}

// Silence mutes the notifications of a unit's rule until Until. AlertID
// is the alert it was set from.
type Silence struct {
	AlertID string     `json:"alert_id"`
	Serial  ups.Serial `json:"serial"`
	Rule    string     `json:"rule"`
	By      Actor      `json:"by"`
	At      time.Time  `json:"at"`
	Reason  string     `json:"reason"`
	Until   time.Time  `json:"until"`
}

// Record is one entry of the audit.
type Record struct {
	Action  string     `json:"action"`
	AlertID string     `json:"alert_id"`
	Serial  ups.Serial `json:"serial"`
	Rule    string     `json:"rule"`
	By      Actor      `json:"by"`
	At      time.Time  `json:"at"`
	Reason  string     `json:"reason,omitempty"`
	// Until is the end of a silence (Silenced only).
	Until time.Time `json:"until,omitzero"`
}

// AlertID is a parsed alert fingerprint.
type AlertID struct {
	Serial ups.Serial
	Rule   string
	Start  int64 // unix ms
}

func (a AlertID) String() string {
	return string(a.Serial) + "/" + a.Rule + "/" + strconv.FormatInt(a.Start, 10)
}

var rulePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// ParseAlertID parses serial/rule/start-ms; dots may stand for the
// slashes (an id in a URL path).
func ParseAlertID(s string) (AlertID, error) {
	sep := "/"
	if !strings.Contains(s, "/") {
		sep = "."
	}
	parts := strings.Split(s, sep)
	if len(parts) != 3 || !ups.ValidSerial(parts[0]) || !rulePattern.MatchString(parts[1]) {
		return AlertID{}, fmt.Errorf("%w: %q (want serial/rule/start-ms)", ErrInvalidAlertID, s)
	}
	ms, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || ms < 0 {
		return AlertID{}, fmt.Errorf("%w: %q (want serial/rule/start-ms)", ErrInvalidAlertID, s)
	}
	return AlertID{Serial: ups.Serial(parts[0]), Rule: parts[1], Start: ms}, nil
}

// Options for Open.
type Options struct {
	Replicas int
	Logger   *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Store reads and writes acknowledgements and silences.
type Store struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	log *slog.Logger
	now func() time.Time
	// ready is closed once Run consumes the alerts.
	ready ready.Signal
}

// Ready is closed once Run consumes the alert events (resolves from then
// on clear acknowledgements).
func (s *Store) Ready() <-chan struct{} { return s.ready.C() }

// Open creates the bucket and the audit stream if needed. It starts
// nothing: Run clears acknowledgements of resolved alerts.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bus.AlertActionsBucket,
		Description: "live acknowledgements and silences of alerts",
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bus.AlertActionsBucket, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        bus.AlertActionsStream,
		Description: "audit of acknowledgements and silences",
		Subjects:    []string{bus.AlertActionsSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      400 * 24 * time.Hour,
		Duplicates:  10 * time.Minute,
		Replicas:    o.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("stream %s: %w", bus.AlertActionsStream, err)
	}
	return &Store{js: js, kv: kv, log: o.Logger.With("component", "alert-actions"), now: o.Now}, nil
}

func ackKey(serial ups.Serial, rule string) string { return "ack." + string(serial) + "." + rule }
func silenceKey(serial ups.Serial, rule string) string {
	return "silence." + string(serial) + "." + rule
}

func checkReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	if len(reason) > MaxReason {
		return "", fmt.Errorf("%w: the reason is longer than %d bytes", ErrInvalid, MaxReason)
	}
	return reason, nil
}

// Ack acknowledges alert id (the caller checked that it fires).
func (s *Store) Ack(ctx context.Context, id AlertID, by Actor, reason string) (Ack, error) {
	reason, err := checkReason(reason)
	if err != nil {
		return Ack{}, err
	}
	a := Ack{AlertID: id.String(), Serial: id.Serial, Rule: id.Rule, By: by, At: s.now().UTC(), Reason: reason}
	b, _ := json.Marshal(a)
	if _, err := s.kv.Put(ctx, ackKey(id.Serial, id.Rule), b); err != nil {
		return Ack{}, fmt.Errorf("acknowledge %s: %w", id, err)
	}
	s.record(ctx, Record{Action: Acknowledged, AlertID: a.AlertID, Serial: a.Serial, Rule: a.Rule, By: by, At: a.At, Reason: reason}, "")
	return a, nil
}

// Unack removes the acknowledgement of alert id, or returns ErrNotFound.
func (s *Store) Unack(ctx context.Context, id AlertID, by Actor, reason string) error {
	reason, err := checkReason(reason)
	if err != nil {
		return err
	}
	a, rev, ok, err := s.getAck(ctx, id.Serial, id.Rule)
	if err != nil {
		return err
	}
	if !ok || a.AlertID != id.String() {
		return fmt.Errorf("%w: alert %s is not acknowledged", ErrNotFound, id)
	}
	if err := s.kv.Delete(ctx, ackKey(id.Serial, id.Rule), jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("remove acknowledgement of %s: %w", id, err)
	}
	s.record(ctx, Record{Action: Unacknowledged, AlertID: a.AlertID, Serial: a.Serial, Rule: a.Rule, By: by,
		At: s.now().UTC(), Reason: reason}, "")
	return nil
}

func (s *Store) getAck(ctx context.Context, serial ups.Serial, rule string) (Ack, uint64, bool, error) {
	e, err := s.kv.Get(ctx, ackKey(serial, rule))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Ack{}, 0, false, nil
	}
	if err != nil {
		return Ack{}, 0, false, fmt.Errorf("read acknowledgement: %w", err)
	}
	var a Ack
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		return Ack{}, 0, false, fmt.Errorf("decode acknowledgement: %w", err)
	}
	return a, e.Revision(), true, nil
}

// Silence silences the rule of alert id's unit for d from now.
func (s *Store) Silence(ctx context.Context, id AlertID, by Actor, d time.Duration, reason string) (Silence, error) {
	reason, err := checkReason(reason)
	if err != nil {
		return Silence{}, err
	}
	if d <= 0 || d > MaxSilence {
		return Silence{}, fmt.Errorf("%w: the duration must be positive and at most %s", ErrInvalid, MaxSilence)
	}
	now := s.now().UTC()
	sl := Silence{AlertID: id.String(), Serial: id.Serial, Rule: id.Rule, By: by, At: now, Reason: reason, Until: now.Add(d)}
	b, _ := json.Marshal(sl)
	if _, err := s.kv.Put(ctx, silenceKey(id.Serial, id.Rule), b); err != nil {
		return Silence{}, fmt.Errorf("silence %s: %w", id, err)
	}
	s.record(ctx, Record{Action: Silenced, AlertID: sl.AlertID, Serial: sl.Serial, Rule: sl.Rule, By: by, At: now,
		Reason: reason, Until: sl.Until}, "")
	return sl, nil
}

// Unsilence lifts the live silence of the rule of alert id's unit, or
// returns ErrNotFound.
func (s *Store) Unsilence(ctx context.Context, id AlertID, by Actor, reason string) error {
	reason, err := checkReason(reason)
	if err != nil {
		return err
	}
	e, err := s.kv.Get(ctx, silenceKey(id.Serial, id.Rule))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return fmt.Errorf("%w: %s/%s is not silenced", ErrNotFound, id.Serial, id.Rule)
	}
	if err != nil {
		return fmt.Errorf("read silence: %w", err)
	}
	var sl Silence
	if err := json.Unmarshal(e.Value(), &sl); err != nil {
		return fmt.Errorf("decode silence: %w", err)
	}
	if !s.now().Before(sl.Until) {
		return fmt.Errorf("%w: %s/%s is not silenced", ErrNotFound, id.Serial, id.Rule)
	}
	if err := s.kv.Delete(ctx, silenceKey(id.Serial, id.Rule), jetstream.LastRevision(e.Revision())); err != nil {
		return fmt.Errorf("lift silence of %s/%s: %w", id.Serial, id.Rule, err)
	}
	s.record(ctx, Record{Action: Unsilenced, AlertID: id.String(), Serial: id.Serial, Rule: id.Rule, By: by,
		At: s.now().UTC(), Reason: reason}, "")
	return nil
}

// Silenced reports whether notifications of (serial, rule) are silenced at
// time at, and until when. The notify pipeline asks it for every event.
func (s *Store) Silenced(ctx context.Context, serial ups.Serial, rule string, at time.Time) (time.Time, bool, error) {
	e, err := s.kv.Get(ctx, silenceKey(serial, rule))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read silence: %w", err)
	}
	var sl Silence
	if err := json.Unmarshal(e.Value(), &sl); err != nil {
		return time.Time{}, false, fmt.Errorf("decode silence: %w", err)
	}
	return sl.Until, at.Before(sl.Until), nil
}

// Live returns every acknowledgement (by alert id) and every unexpired
// silence (by serial/rule) in one pass over the bucket.
func (s *Store) Live(ctx context.Context) (map[string]Ack, map[string]Silence, error) {
	acks, silences := map[string]Ack{}, map[string]Silence{}
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, nil, fmt.Errorf("alert actions: %w", err)
	}
	defer func() { _ = w.Stop() }()
	now := s.now()
	for {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, nil, errors.New("alert actions: watcher closed")
			}
			if e == nil {
				return acks, silences, nil
			}
			switch {
			case strings.HasPrefix(e.Key(), "ack."):
				var a Ack
				if json.Unmarshal(e.Value(), &a) == nil {
					acks[a.AlertID] = a
				}
			case strings.HasPrefix(e.Key(), "silence."):
				var sl Silence
				if json.Unmarshal(e.Value(), &sl) == nil && now.Before(sl.Until) {
					silences[string(sl.Serial)+"/"+sl.Rule] = sl
				}
			}
		}
	}
}

// History returns the audit records of serial whose time is in [from,
// to), oldest first.
func (s *Store) History(ctx context.Context, serial ups.Serial, from, to time.Time) ([]Record, error) {
	cons, err := s.js.OrderedConsumer(ctx, bus.AlertActionsStream, jetstream.OrderedConsumerConfig{
		// A reader, done in moments: the server drops it soon after (the
		// default keeps each for 5 minutes, and a busy console or a polling
		// test would pile them up to the consumer limit).
		InactiveThreshold: 10 * time.Second,
		FilterSubjects:    []string{bus.AlertActionsSubjectPrefix + string(serial) + ".>"},
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &from,
	})
	if err != nil {
		return nil, fmt.Errorf("alert actions of %s: %w", serial, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("alert actions of %s: %w", serial, err)
	}
	out := []Record{}
	left := info.NumPending
	for left > 0 {
		batch, err := cons.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("alert actions of %s: %w", serial, err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			var r Record
			if json.Unmarshal(msg.Data(), &r) != nil || r.At.Before(from) || !r.At.Before(to) {
				continue
			}
			out = append(out, r)
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("alert actions of %s: %w", serial, err)
		}
		if n == 0 {
			break
		}
		left -= uint64(n)
	}
	slices.SortStableFunc(out, func(x, y Record) int { return x.At.Compare(y.At) })
	return out, nil
}

// record appends r to the audit; msgID (optional) deduplicates.
func (s *Store) record(ctx context.Context, r Record, msgID string) {
	b, _ := json.Marshal(r)
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	subj := bus.AlertActionsSubjectPrefix + string(r.Serial) + "." + r.Rule
	if _, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: b}, opts...); err != nil {
		s.log.Warn("alert action not recorded in the audit", "action", r.Action, "alert", r.AlertID, "err", err)
	}
}

// Run clears the acknowledgement of each alert that resolves, until ctx
// is done. It shares a durable consumer of the ALERTS stream with the
// other instances, so each resolve is handled once; it waits for the
// stream when the rule engine has not created it yet.
func (s *Store) Run(ctx context.Context) error {
	var cons jetstream.Consumer
	for {
		var err error
		cons, err = s.js.CreateOrUpdateConsumer(ctx, rulesAlertsStream, jetstream.ConsumerConfig{
			Durable:       bus.AlertActionsConsumer,
			Description:   "clears acknowledgements of resolved alerts",
			AckPolicy:     jetstream.AckExplicitPolicy,
			DeliverPolicy: jetstream.DeliverNewPolicy,
			AckWait:       30 * time.Second,
		})
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			s.log.Warn("alert actions consumer not created; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) { s.handle(ctx, msg) })
	if err != nil {
		return fmt.Errorf("alert actions: %w", err)
	}
	s.ready.Up()
	defer s.ready.Down() // Run may be called again after a failure
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	return nil
}

// rulesAlertsStream is the rule engine's stream of alert events.
const rulesAlertsStream = bus.AlertsStream

func (s *Store) handle(ctx context.Context, msg jetstream.Msg) {
	var ev rules.Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil || ev.Kind != rules.Resolved {
		_ = msg.Ack()
		return
	}
	if err := s.clear(ctx, &ev); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("acknowledgement not cleared; will retry", "alert", ev.Fingerprint, "err", err)
		}
		_ = msg.NakWithDelay(time.Second)
		return
	}
	_ = msg.Ack()
}

// clear deletes the acknowledgement of the resolved alert ev, if any.
func (s *Store) clear(ctx context.Context, ev *rules.Event) error {
	a, rev, ok, err := s.getAck(ctx, ev.Serial, ev.Rule)
	if err != nil || !ok || a.AlertID != ev.Fingerprint {
		return err
	}
	err = s.kv.Delete(ctx, ackKey(ev.Serial, ev.Rule), jetstream.LastRevision(rev))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return nil // acknowledged again meanwhile: a newer record, not ours to clear
	}
	if err != nil {
		return fmt.Errorf("clear acknowledgement of %s: %w", ev.Fingerprint, err)
	}
	s.record(ctx, Record{Action: AckCleared, AlertID: a.AlertID, Serial: a.Serial, Rule: a.Rule, At: s.now().UTC(),
		Reason: "alert resolved"}, a.AlertID+"/"+AckCleared)
	return nil
}

// EraseActor removes an account from the actions, as its deletion
// requires: its live acknowledgements and silences stay in force (people
// relied on them) but name no one and lose their reason (free text the
// person wrote); its audit records are written again the same way and the
// originals deleted securely. It returns how many records it changed.
func (s *Store) EraseActor(ctx context.Context, accountID string) (int, error) {
	if accountID == "" {
		return 0, fmt.Errorf("%w: no account id", ErrInvalid)
	}
	n := 0
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return 0, fmt.Errorf("erase alert actions: %w", err)
	}
	var entries []jetstream.KeyValueEntry
	for e := range w.Updates() {
		if e == nil {
			break
		}
		entries = append(entries, e)
	}
	_ = w.Stop()
	for _, e := range entries {
		var v map[string]json.RawMessage
		var who struct {
			By Actor `json:"by"`
		}
		if json.Unmarshal(e.Value(), &v) != nil || json.Unmarshal(e.Value(), &who) != nil || who.By.Account != accountID {
			continue
		}
		v["by"], _ = json.Marshal(Actor{Erased: true})
		v["reason"] = json.RawMessage(`""`)
		b, _ := json.Marshal(v)
		if _, err := s.kv.Update(ctx, e.Key(), b, e.Revision()); err != nil {
			return n, fmt.Errorf("erase alert actions: %s: %w", e.Key(), err)
		}
		// The bucket keeps one revision per key: the old value is gone.
		n++
	}
	st, hits, err := s.recordsBy(ctx, accountID)
	if err != nil {
		return n, fmt.Errorf("erase alert actions: %w", err)
	}
	for _, h := range hits {
		h.rec.By, h.rec.Reason = Actor{Erased: true}, ""
		b, _ := json.Marshal(h.rec)
		if _, err := s.js.Publish(ctx, bus.AlertActionsSubjectPrefix+string(h.rec.Serial)+"."+h.rec.Rule, b); err != nil {
			return n, fmt.Errorf("erase alert actions: %w", err)
		}
		if err := st.SecureDeleteMsg(ctx, h.seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, fmt.Errorf("erase alert actions: %w", err)
		}
		n++
	}
	return n, nil
}

// RecordsOf returns the audit records of the actions accountID took,
// oldest first (for the export of its data).
func (s *Store) RecordsOf(ctx context.Context, accountID string) ([]Record, error) {
	_, hits, err := s.recordsBy(ctx, accountID)
	if err != nil {
		return nil, fmt.Errorf("alert actions of account: %w", err)
	}
	out := make([]Record, len(hits))
	for i, h := range hits {
		out[i] = h.rec
	}
	return out, nil
}

type hit struct {
	seq uint64
	rec Record
}

// recordsBy scans the audit for the records whose actor is accountID.
func (s *Store) recordsBy(ctx context.Context, accountID string) (jetstream.Stream, []hit, error) {
	st, err := s.js.Stream(ctx, bus.AlertActionsStream)
	if err != nil {
		return nil, nil, err
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return st, nil, err
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: 10 * time.Second})
	if err != nil {
		return nil, nil, err
	}
	var hits []hit
	left := info.State.Msgs
	for left > 0 {
		batch, err := cons.Fetch(int(min(left, 1000)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, nil, err
		}
		got, done := 0, false
		for msg := range batch.Messages() {
			got++
			left--
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			var r Record
			if json.Unmarshal(msg.Data(), &r) == nil && r.By.Account == accountID {
				hits = append(hits, hit{md.Sequence.Stream, r})
			}
			done = md.Sequence.Stream >= info.State.LastSeq
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, nil, err
		}
		if done || got == 0 {
			break
		}
	}
	return st, hits, nil
}
