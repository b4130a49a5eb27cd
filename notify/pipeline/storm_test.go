package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// createOwners makes n accounts, account i owning serial(i) with the
// contacts c(i).
func createOwners(tb testing.TB, e *env, n int, serial func(int) ups.Serial, c func(int) recipients.Contacts) {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, err := e.store.Create(context.Background(), recipients.Recipient{
				Account:  recipients.Account{Units: []ups.Serial{serial(i)}},
				Personal: recipients.Personal{Contacts: c(i)}})
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

func publishAll(tb testing.TB, js jetstream.JetStream, evs []rules.Event) {
	tb.Helper()
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		if _, err := js.PublishMsgAsync(&nats.Msg{Subject: "upswatch.alerts." + string(ev.Serial) + "." + ev.Rule, Data: b},
			jetstream.WithMsgID(ev.DedupID())); err != nil {
			tb.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		tb.Fatal("publishing did not complete")
	}
}

// BenchmarkStorm: 10,000 units go on battery within a second, one FCM
// token each, the fake FCM answering in 50 ms. Reported: seconds from the
// first publish until all 10,000 pushes reached the fake (target 10 s).
//
//	go test -run '^$' -bench Storm -benchtime 1x ./notify/pipeline
func BenchmarkStorm(b *testing.B) {
	const n = 10000
	e := newEnv(b, recipients.FCM)
	serialOf := func(i int) ups.Serial { return ups.Serial(fmt.Sprintf("5%011d", i)) }
	for i := range n {
		e.units[serialOf(i)] = registry.Unit{Serial: serialOf(i), Name: fmt.Sprintf("Unit %d", i), Site: fmt.Sprintf("site-%d", i)}
	}
	createOwners(b, e, n, serialOf, func(i int) recipients.Contacts {
		return recipients.Contacts{FCMTokens: []string{fmt.Sprintf("storm-token-%d", i)}}
	})
	e.fcm.SetDelay(50 * time.Millisecond)
	e.start(b)
	round := 0
	for b.Loop() {
		round++
		base := len(e.fcm.Requests())
		started := time.Now().Add(-6 * time.Second).Add(time.Duration(round) * time.Millisecond)
		evs := make([]rules.Event, n)
		for i := range evs {
			evs[i] = event(rules.Firing, "on_battery", rules.Warning, serialOf(i), started)
		}
		t0 := time.Now()
		publishAll(b, e.js, evs)
		published := time.Since(t0)
		if _, err := e.fcm.WaitRequests(base+n, 60*time.Second); err != nil {
			b.Fatal(err)
		}
		all := time.Since(t0)
		b.ReportMetric(all.Seconds(), "s_all_pushes")
		b.ReportMetric(published.Seconds(), "s_publish")
		b.Logf("%d events published in %v; all %d pushes at the fake after %v", n, published, n, all)
	}
	if got := okFCM(e.fcm.Requests()); got != b.N*n {
		b.Fatalf("%d successful pushes, want %d", got, b.N*n)
	}
}

// The SMS queue drains at the sender's rate, with nothing lost: 40
// numbers at 20 segments/s take about 2 s.
func TestSMSDrainsAtRate(t *testing.T) {
	const n = 40
	e := newEnv(t, recipients.SMS)
	e.senders.SMS[0].SegmentsPerSecond, e.senders.SMS[0].Burst = 20, 1
	createOwners(t, e, n, func(int) ups.Serial { return serial }, func(i int) recipients.Contacts {
		return recipients.Contacts{Phones: []string{fmt.Sprintf("+8490%07d", i)}}
	})
	e.start(t)
	ev := event(rules.Firing, "low_battery", rules.Critical, serial, time.Now())
	t0 := time.Now()
	publish(t, e.js, ev, ev.DedupID())
	reqs, err := e.sms.WaitRequests(n, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	t.Logf("%d SMS drained in %v at 20 segments/s", n, took)
	if took < 1800*time.Millisecond {
		t.Fatalf("drained in %v: faster than 20 segments/s", took)
	}
	e.settle(t)
	seen := map[string]bool{}
	for _, r := range e.sms.Requests() {
		if seen[r.To] {
			t.Fatalf("%s texted twice", recipients.Mask(recipients.SMS, r.To))
		}
		seen[r.To] = true
	}
	if len(seen) != n || len(reqs) != n {
		t.Fatalf("%d distinct numbers texted, want %d", len(seen), n)
	}
}
