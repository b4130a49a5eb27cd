package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/notify"
)

// EraseRecipient removes every trace of an account the pipeline holds:
// its notification log entries, its audit records and its notifications
// still in the outbox. Audit and outbox messages are deleted securely
// (overwritten), so nothing of them stays in the stream's files. It
// returns how many entries it removed.
func (p *Pipeline) EraseRecipient(ctx context.Context, accountID string) (int, error) {
	if accountID == "" || strings.ContainsAny(accountID, ".*> ") {
		return 0, fmt.Errorf("erase: invalid account id")
	}
	if err := p.ensure(ctx); err != nil {
		return 0, err
	}
	n := 0
	keys, err := p.logKeys(ctx, accountID)
	if err != nil {
		return 0, fmt.Errorf("erase: %w", err)
	}
	for _, k := range keys {
		if err := p.logKV.Purge(ctx, k); err != nil {
			return n, fmt.Errorf("erase: notification log: %w", err)
		}
		n++
	}
	for _, name := range []string{AuditStream, OutboxStream} {
		m, err := p.eraseFromStream(ctx, name, accountID)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Records is everything the pipeline holds about one account: exactly what
// EraseRecipient removes.
type Records struct {
	// Log is the account's notification log: one entry per (alert event,
	// channel) it was notified of, and how that ended.
	Log []LogRecord `json:"log"`
	// Pending are its notifications still in the outbox.
	Pending []Pending `json:"pending"`
	// Deliveries are the recorded attempts to notify it (the audit).
	Deliveries []Delivery `json:"deliveries"`
}

// LogRecord is one notification log entry of an account.
type LogRecord struct {
	// Key is the log key, <recipient>.<channel>.<event id>.
	Key     string `json:"key"`
	Channel string `json:"channel"`
	// EventID is the alert event's dedup id (fingerprint/kind[/at-ms]).
	EventID  string    `json:"event_id"`
	State    string    `json:"state"`
	At       time.Time `json:"at"`
	Response string    `json:"provider_response,omitempty"`
}

// Pending is a notification waiting in the outbox, as the outbox message
// holds it: the rendered message and what it is about, everything needed
// to send except the addresses (looked up when it is sent).
type Pending struct {
	Key       string         `json:"key"`
	AlertID   string         `json:"alert_id"`
	EventID   string         `json:"event_id"`
	Kind      string         `json:"kind"`
	Rule      string         `json:"rule"`
	Serial    string         `json:"serial"`
	Recipient string         `json:"recipient"`
	Channel   string         `json:"channel"`
	Message   notify.Message `json:"message"`
	EventAt   time.Time      `json:"event_at"`
	QueuedAt  time.Time      `json:"queued_at"`
}

// RecordsOf returns everything the pipeline holds about the account (for
// the export of its data): its notification log entries, its notifications
// still in the outbox and its delivery attempts, each oldest first.
func (p *Pipeline) RecordsOf(ctx context.Context, accountID string) (Records, error) {
	out := Records{Log: []LogRecord{}, Pending: []Pending{}, Deliveries: []Delivery{}}
	if accountID == "" || strings.ContainsAny(accountID, ".*> ") {
		return out, fmt.Errorf("records: invalid account id")
	}
	if err := p.ensure(ctx); err != nil {
		return out, err
	}
	keys, err := p.logKeys(ctx, accountID)
	if err != nil {
		return out, fmt.Errorf("records: %w", err)
	}
	for _, k := range keys {
		le, ok, err := p.readLog(ctx, k)
		if err != nil {
			return out, fmt.Errorf("records: %w", err)
		}
		if !ok {
			continue // expired or erased meanwhile
		}
		rest := strings.TrimPrefix(k, accountID+".")
		channel, eventID, _ := strings.Cut(rest, ".")
		out.Log = append(out.Log, LogRecord{Key: k, Channel: channel, EventID: eventID, State: le.State, At: le.At,
			Response: le.Response})
	}
	slices.SortStableFunc(out.Log, func(a, b LogRecord) int { return a.At.Compare(b.At) })
	_, data, err := p.scanStream(ctx, OutboxStream, accountID)
	if err != nil {
		return out, fmt.Errorf("records: %w", err)
	}
	for _, b := range data {
		var pd Pending
		if json.Unmarshal(b, &pd) == nil {
			out.Pending = append(out.Pending, pd)
		}
	}
	if out.Deliveries, err = p.DeliveriesOf(ctx, accountID); err != nil {
		return out, fmt.Errorf("records: %w", err)
	}
	return out, nil
}

// logKeys lists the account's notification log keys.
func (p *Pipeline) logKeys(ctx context.Context, accountID string) ([]string, error) {
	lister, err := p.logKV.ListKeysFiltered(ctx, accountID+".>")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list notification log: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// DeliveriesOf lists every recorded attempt to notify the account, oldest
// first (for the export of its data).
func (p *Pipeline) DeliveriesOf(ctx context.Context, accountID string) ([]Delivery, error) {
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	_, data, err := p.scanStream(ctx, AuditStream, accountID)
	if err != nil {
		return nil, err
	}
	out := make([]Delivery, 0, len(data))
	for _, b := range data {
		var d Delivery
		if json.Unmarshal(b, &d) == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// eraseFromStream deletes the messages of stream whose JSON names
// accountID as recipient.
func (p *Pipeline) eraseFromStream(ctx context.Context, name, accountID string) (int, error) {
	seqs, _, err := p.scanStream(ctx, name, accountID)
	if err != nil {
		return 0, err
	}
	st, err := p.js.Stream(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("erase: stream %s: %w", name, err)
	}
	return p.deleteSeqs(ctx, st, name, seqs)
}

// scanStream returns the sequences and data of the messages of stream
// whose JSON names accountID as recipient.
func (p *Pipeline) scanStream(ctx context.Context, name, accountID string) ([]uint64, [][]byte, error) {
	var datas [][]byte
	st, err := p.js.Stream(ctx, name)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", name, err)
	}
	if info.State.Msgs == 0 {
		return nil, nil, nil
	}
	last := info.State.LastSeq
	var seqs []uint64
	named := func(data []byte) bool {
		var who struct {
			Recipient string `json:"recipient"`
		}
		return json.Unmarshal(data, &who) == nil && who.Recipient == accountID
	}
	if info.Config.Retention == jetstream.WorkQueuePolicy {
		// A work queue takes no second unfiltered consumer: read by
		// sequence (the outbox holds only what is not yet sent).
		for seq := info.State.FirstSeq; seq <= last; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("read %s: %w", name, err)
			}
			if named(m.Data) {
				seqs, datas = append(seqs, seq), append(datas, m.Data)
			}
		}
		return seqs, datas, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: 10 * time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", name, err)
	}
	// Ask for no more than the stream holds, so a fetch returns as soon as
	// it has them rather than waiting out its deadline for more.
	left := info.State.Msgs
	for left > 0 {
		batch, err := cons.Fetch(int(min(left, 1000)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", name, err)
		}
		got, done := 0, false
		for msg := range batch.Messages() {
			got++
			left--
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			if named(msg.Data()) {
				seqs, datas = append(seqs, md.Sequence.Stream), append(datas, msg.Data())
			}
			if md.Sequence.Stream >= last {
				done = true
			}
		}
		if done || got == 0 {
			break
		}
	}
	return seqs, datas, nil
}

func (p *Pipeline) deleteSeqs(ctx context.Context, st jetstream.Stream, name string, seqs []uint64) (int, error) {
	n := 0
	for _, seq := range seqs {
		if err := st.SecureDeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, fmt.Errorf("erase: delete from %s: %w", name, err)
		}
		n++
	}
	return n, nil
}
