// Package weekly sends each account a short summary of its fleet's last
// week on Monday morning in its time zone ("Last week: 3 outages, 47 min
// on battery, longest 31 min at Office (hq); mains in band 99.2 %"),
// through its channels, once.
//
// The numbers are report.Reporter's for the account's fleet (the units it
// owns and those of the sites it manages, recipients.Account.InFleet, as
// GET /v1/reports?scope=account computes them) over the week from the
// previous Monday 00:00 to this Monday 00:00 in the account's zone (167
// or 169 hours across a daylight-saving change). The text comes from
// notify/templates (weekly, in the account's language), and the
// notifier's outbox delivers it (pipeline.Enqueue): retries, dead
// addresses, the audit and the notification log as for alerts.
//
// # Once per account and week
//
// Before anything is queued, the sender claims the week in the KV bucket
// upswatch_weekly (key <account>.<ISO week reported>) with a create,
// which only one instance, or one run after a restart, wins. The claim
// becomes "sent" once the summary is queued; a claim left by an instance
// that died in between is taken over (compare-and-set on its revision)
// after ClaimTimeout, and the outbox's own dedup (log key and msg id per
// account, channel and week) keeps that second try from sending what the
// first one had queued.
//
// # Choices
//
//   - Channels: the account's warning channels (by default push, no SMS):
//     a summary is no emergency.
//   - Quiet hours: a summary due inside them waits for their end rather
//     than being dropped as a warning is (it would be lost for a week).
//   - Late: a summary not sent within Late (a day) of its time (the
//     service was down, the account was created on a Wednesday) is
//     skipped: "last week" on a Thursday is noise.
//   - Empty: an account with no units gets nothing; a fleet with no
//     outage says so ("no outages on your 4 units"), and leaves the mains
//     out when no unit reported a voltage.
//   - A time zone this machine does not know is taken as UTC, logged.
package weekly

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/internal/ready"
	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/notify/templates"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/report"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// Kind is the summary's kind in the outbox, the notification log and the
// audit (its deliveries are recorded under weekly_report/<account>/<week>).
const Kind = "weekly_report"

// Bucket holds the claims: <account>.<ISO week> -> claimed or sent.
const Bucket = bus.WeeklyBucket

// Defaults of Config.
const (
	DefaultAt           = "08:00"
	DefaultLate         = 24 * time.Hour
	DefaultEvery        = time.Minute
	DefaultClaimTimeout = 5 * time.Minute
	// expireAfter: a summary its channels could not take within this
	// long of its time is recorded failed, not sent late.
	expireAfter = 12 * time.Hour
)

// Accounts is what the sender needs of notify/recipients.
type Accounts interface {
	List() []string
	Lookup(id string) (recipients.Recipient, bool)
}

// Units is what it needs of the registry.
type Units interface {
	List() []registry.Unit
	Lookup(serial ups.Serial) (registry.Unit, bool)
}

// Reports computes a unit's report (report.Reporter); a fleet's is their
// report.Sum, as the API's.
type Reports interface {
	Unit(ctx context.Context, serial ups.Serial, from, to time.Time) (report.Report, error)
}

// Outbox queues a notification for delivery (pipeline.Pipeline).
type Outbox interface {
	Enqueue(ctx context.Context, d pipeline.Direct) (int, error)
}

// Config of the sender.
type Config struct {
	Accounts  Accounts
	Units     Units
	Reports   Reports
	Outbox    Outbox
	Templates *templates.Set
	// At is the local time on Monday the summary is due, "HH:MM"
	// (DefaultAt).
	At string
	// Late: a summary not sent this long after it was due is skipped
	// (DefaultLate).
	Late time.Duration
	// Every is how often the accounts are looked at (DefaultEvery).
	Every time.Duration
	// Trigger, when set, replaces the ticker: a look each time it
	// receives (tests, with Now, drive the sender with it).
	Trigger <-chan time.Time
	// ClaimTimeout: a claim older than this that never became "sent" was
	// left by an instance that stopped; another takes it over.
	ClaimTimeout time.Duration
	// InstanceID names this instance in its claims (for people reading
	// the bucket).
	InstanceID string
	Replicas   int
	Logger     *slog.Logger
	// Registerer, when set, gets upswatch_weekly_summaries_total.
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Sender sends the weekly summaries.
type Sender struct {
	js     jetstream.JetStream
	cfg    Config
	log    *slog.Logger
	hour   int
	minute int
	kv     jetstream.KeyValue
	ready  ready.Signal
	checks atomic.Uint64
	queued atomic.Uint64
	// summaries counts by result: queued, failed (retried at the next
	// look).
	summaries *prometheus.CounterVec
	// settled holds the claims known sent (key -> when due), so the looks
	// through the rest of the day ask the bucket nothing of them; only
	// Run's goroutine uses it.
	settled map[string]time.Time
}

var clockPattern = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)

// ParseClock parses "HH:MM" into hour and minute.
func ParseClock(s string) (hour, minute int, err error) {
	if !clockPattern.MatchString(s) {
		return 0, 0, fmt.Errorf("weekly: time %q must be HH:MM", s)
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), int(s[3]-'0')*10 + int(s[4]-'0'), nil
}

// New validates cfg. It starts nothing.
func New(js jetstream.JetStream, cfg Config) (*Sender, error) {
	if js == nil || cfg.Accounts == nil || cfg.Units == nil || cfg.Reports == nil || cfg.Outbox == nil || cfg.Templates == nil {
		return nil, errors.New("weekly: js, Accounts, Units, Reports, Outbox and Templates are required")
	}
	if cfg.At == "" {
		cfg.At = DefaultAt
	}
	h, m, err := ParseClock(cfg.At)
	if err != nil {
		return nil, err
	}
	if cfg.Late <= 0 {
		cfg.Late = DefaultLate
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.ClaimTimeout <= 0 {
		cfg.ClaimTimeout = DefaultClaimTimeout
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Sender{js: js, cfg: cfg, log: cfg.Logger.With("component", "weekly"), hour: h, minute: m,
		settled: map[string]time.Time{},
		summaries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "upswatch_weekly_summaries_total",
			Help: "Weekly summaries this instance queued, or failed to (retried at its next look), by result."}, []string{"result"})}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.summaries); err != nil {
			return nil, fmt.Errorf("weekly: metrics: %w", err)
		}
	}
	return s, nil
}

// Ready is closed once the bucket exists.
func (s *Sender) Ready() <-chan struct{} { return s.ready.C() }

// Checks counts the looks at the accounts completed (tests wait on it).
func (s *Sender) Checks() uint64 { return s.checks.Load() }

// Queued counts the summaries this sender queued.
func (s *Sender) Queued() uint64 { return s.queued.Load() }

// Run looks at the accounts at once and then every Every (or on each
// Trigger) until ctx is done.
func (s *Sender) Run(ctx context.Context) error {
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "weekly summaries claimed or sent, by account and ISO week",
		Storage:     jetstream.FileStorage,
		// A claim matters until its summary can no longer be due (Late
		// after its Monday); three weeks is ample.
		TTL:      21 * 24 * time.Hour,
		Replicas: s.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("weekly: bucket %s: %w", Bucket, err)
	}
	s.kv = kv
	trigger := s.cfg.Trigger
	if trigger == nil {
		t := time.NewTicker(s.cfg.Every)
		defer t.Stop()
		trigger = t.C
	}
	s.ready.Up()
	defer s.ready.Down()
	s.check(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-trigger:
			s.check(ctx)
		}
	}
}

// check sends every summary due now; an account that fails is logged and
// tried again at the next look (its claim released).
func (s *Sender) check(ctx context.Context) {
	defer s.checks.Add(1)
	now := s.cfg.Now()
	for key, due := range s.settled {
		if now.Sub(due) > s.cfg.Late {
			delete(s.settled, key) // no longer due: never looked at again
		}
	}
	// A unit's week is computed once per look, however many accounts
	// (its owner, its site's managers) get it in their summary.
	units := unitReports{}
	for _, id := range s.cfg.Accounts.List() {
		if ctx.Err() != nil {
			return
		}
		if err := s.account(ctx, id, now, units); err != nil && ctx.Err() == nil {
			s.log.Warn("weekly summary not sent; will retry", "account", id, "err", err)
		}
	}
}

// Last is the latest Monday at hour:minute in loc at or before t.
func Last(t time.Time, loc *time.Location, hour, minute int) time.Time {
	lt := t.In(loc)
	y, m, d := lt.Date()
	sinceMonday := (int(lt.Weekday()) + 6) % 7
	slot := time.Date(y, m, d-sinceMonday, hour, minute, 0, 0, loc)
	if slot.After(t) {
		slot = time.Date(y, m, d-sinceMonday-7, hour, minute, 0, 0, loc)
	}
	return slot
}

// Next is the first Monday at hour:minute in loc after t.
func Next(t time.Time, loc *time.Location, hour, minute int) time.Time {
	y, m, d := Last(t, loc, hour, minute).Date()
	return time.Date(y, m, d+7, hour, minute, 0, 0, loc)
}

// Week is the week a summary due at slot (a Monday, in loc) reports:
// from the previous Monday 00:00 to slot's Monday 00:00, in loc.
func Week(slot time.Time, loc *time.Location) (from, to time.Time) {
	y, m, d := slot.In(loc).Date()
	return time.Date(y, m, d-7, 0, 0, 0, 0, loc), time.Date(y, m, d, 0, 0, 0, 0, loc)
}

// WeekID is the ISO week of t, "2026-W10": the claim key's and the
// outbox id's part.
func WeekID(t time.Time) string {
	y, w := t.ISOWeek()
	return fmt.Sprintf("%04d-W%02d", y, w)
}

// account sends id's summary when it is due at now and not yet claimed.
func (s *Sender) account(ctx context.Context, id string, now time.Time, units unitReports) error {
	r, ok := s.cfg.Accounts.Lookup(id)
	if !ok || r.Preferences.WeeklyReportOff {
		return nil
	}
	loc, known := r.Zone()
	slot := Last(now, loc, s.hour, s.minute)
	due := r.Preferences.QuietUntil(slot, loc)
	if now.Before(due) || now.Sub(due) > s.cfg.Late {
		return nil
	}
	from, to := Week(slot, loc)
	week := WeekID(from)
	key := id + "." + week
	if _, ok := s.settled[key]; ok {
		return nil
	}
	channels := r.Preferences.ChannelsFor(rules.Warning)
	var serials []ups.Serial
	for _, u := range s.cfg.Units.List() {
		if r.InFleet(u.Serial, u.Site) {
			serials = append(serials, u.Serial)
		}
	}
	if len(serials) == 0 || len(channels) == 0 {
		return nil
	}
	rev, st, err := s.claim(ctx, key, now)
	if st == claimSent {
		s.settled[key] = due
	}
	if err != nil || st != claimWon {
		return err
	}
	if !known {
		s.log.Warn("account time zone unknown; its weekly summary uses UTC", "account", id, "time_zone", r.TimeZone)
	}
	n, err := s.send(ctx, r, serials, channels, from, to, week, due, loc, units)
	if err != nil {
		s.summaries.WithLabelValues("failed").Inc()
		s.release(ctx, key, rev)
		return err
	}
	b, _ := json.Marshal(marker{State: stateSent, By: s.cfg.InstanceID, At: now.UTC()})
	if _, err := s.kv.Update(ctx, key, b, rev); err != nil {
		// The summary is queued and the outbox dedups a second try: the
		// claim times out into one that queues nothing.
		return fmt.Errorf("mark %s sent: %w", week, err)
	}
	s.settled[key] = due
	s.queued.Add(1)
	s.summaries.WithLabelValues("queued").Inc()
	s.log.Info("weekly summary queued", "account", id, "week", week, "units", len(serials), "notifications", n)
	return nil
}

// send computes and renders the summary of [from, to) and queues it.
func (s *Sender) send(ctx context.Context, r recipients.Recipient, serials []ups.Serial, channels []string,
	from, to time.Time, week string, due time.Time, loc *time.Location, units unitReports) (int, error) {
	each := make([]report.Report, 0, len(serials))
	for _, serial := range serials {
		k := unitWeek{serial, from.UnixMilli(), to.UnixMilli()}
		u, ok := units[k]
		if !ok {
			var err error
			if u, err = s.cfg.Reports.Unit(ctx, serial, from, to); err != nil {
				return 0, fmt.Errorf("report of %s: %w", week, err)
			}
			units[k] = u
		}
		each = append(each, u)
	}
	rep := report.Sum(from, to, each)
	text, err := s.cfg.Templates.Weekly(r.Language, s.data(rep, from, to, loc))
	if err != nil {
		return 0, fmt.Errorf("render %s: %w", week, err)
	}
	n, err := s.cfg.Outbox.Enqueue(ctx, pipeline.Direct{Recipient: r.ID, Kind: Kind, ID: week, Text: text,
		Channels: channels, At: due, Expires: due.Add(expireAfter), Data: map[string]string{"week": week}})
	if err != nil {
		return n, fmt.Errorf("queue %s: %w", week, err)
	}
	return n, nil
}

// unitReports are the unit reports computed in one look.
type unitReports map[unitWeek]report.Report

type unitWeek struct {
	serial   ups.Serial
	from, to int64 // unix ms: accounts in different zones have other weeks
}

// data is what the summary's template is given for a fleet's report over
// [from, to), in loc.
func (s *Sender) data(rep report.Report, from, to time.Time, loc *time.Location) templates.WeeklyData {
	o := rep.Outages
	d := templates.WeeklyData{From: from.In(loc).Format("02/01"), To: to.In(loc).AddDate(0, 0, -1).Format("02/01"),
		Units: len(rep.Units), Outages: o.Count, OnBattery: roundDuration(o.TotalS), Longest: roundDuration(o.LongestS)}
	if o.LongestUnit != "" {
		d.LongestAt = string(o.LongestUnit)
		if u, ok := s.cfg.Units.Lookup(o.LongestUnit); ok {
			if u.Name != "" {
				d.LongestAt = u.Name
			}
			if u.Site != "" {
				d.LongestAt += " (" + u.Site + ")"
			}
		}
	}
	if share := rep.Mains.VoltageInBandShare; share != nil {
		d.HasMains, d.MainsInBand = true, *share*100
	}
	return d
}

// roundDuration: whole minutes from a minute up ("47 min", not "47 min
// 12 s"), seconds below.
func roundDuration(seconds float64) time.Duration {
	d := time.Duration(seconds * float64(time.Second))
	if d >= time.Minute {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}

// marker is a claim's value.
type marker struct {
	State string    `json:"state"` // claimed, sent
	By    string    `json:"by,omitempty"`
	At    time.Time `json:"at"`
}

const (
	stateClaimed = "claimed"
	stateSent    = "sent"
)

// claimState is what claim found.
type claimState int

const (
	claimWon  claimState = iota // this sender sends
	claimHeld                   // another is sending (or just released it)
	claimSent                   // sent: nothing more to do this week
)

// claim wins key for this sender: created now, or taken over from a
// claim that timed out. Won, it returns the revision to update.
func (s *Sender) claim(ctx context.Context, key string, now time.Time) (uint64, claimState, error) {
	b, _ := json.Marshal(marker{State: stateClaimed, By: s.cfg.InstanceID, At: now.UTC()})
	rev, err := s.kv.Create(ctx, key, b)
	if err == nil {
		return rev, claimWon, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return 0, claimHeld, fmt.Errorf("claim %s: %w", key, err)
	}
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return 0, claimHeld, nil // released just now: the next look claims it
	}
	if err != nil {
		return 0, claimHeld, fmt.Errorf("read claim %s: %w", key, err)
	}
	var m marker
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		return 0, claimHeld, fmt.Errorf("decode claim %s: %w", key, err)
	}
	if m.State == stateSent {
		return 0, claimSent, nil
	}
	if now.Sub(m.At) < s.cfg.ClaimTimeout {
		return 0, claimHeld, nil
	}
	rev, err = s.kv.Update(ctx, key, b, e.Revision())
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, claimHeld, nil // another instance took it over first
	}
	if err != nil {
		return 0, claimHeld, fmt.Errorf("take over claim %s: %w", key, err)
	}
	s.log.Info("weekly summary claim taken over from a stopped instance", "claim", key, "from", m.By)
	return rev, claimWon, nil
}

// release drops a claim whose summary was not queued, so the next look
// tries again; when that fails, the claim times out.
func (s *Sender) release(ctx context.Context, key string, rev uint64) {
	if err := s.kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil && ctx.Err() == nil {
		s.log.Warn("weekly summary claim not released; it times out", "claim", key, "err", err)
	}
}

// Erase purges the account's claims (their keys name it), for the
// account's erasure; it returns how many it removed. The bucket not
// existing yet is nothing to erase.
func (s *Sender) Erase(ctx context.Context, accountID string) (int, error) {
	if accountID == "" || strings.ContainsAny(accountID, ".*> ") {
		return 0, errors.New("weekly: erase: invalid account id")
	}
	kv, err := s.js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("weekly: erase: %w", err)
	}
	lister, err := kv.ListKeysFiltered(ctx, accountID+".>")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("weekly: erase: list claims: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for i, k := range keys {
		if err := kv.Purge(ctx, k); err != nil {
			return i, fmt.Errorf("weekly: erase: %w", err)
		}
	}
	return len(keys), nil
}
