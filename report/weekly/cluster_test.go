package weekly

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/notify/templates"
	"github.com/upswatch/upswatch/ups"
)

// accounts is a fixed set of accounts.
type accounts map[string]recipients.Recipient

func (a accounts) List() []string {
	var ids []string
	for id := range a {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (a accounts) Lookup(id string) (recipients.Recipient, bool) { r, ok := a[id]; return r, ok }

// TestOneSenderOnACluster runs two senders, connected to different
// nodes of a three-node NATS cluster, with the claims bucket replicated
// three times (as serve instances sharing a cluster do): every account's
// summary is queued once, by one of them.
func TestOneSenderOnACluster(t *testing.T) {
	cluster := testenv.NATS(t, 3)
	now := time.Date(2026, 3, 9, 1, 30, 0, 0, time.UTC) // Monday 08:30 in Ho Chi Minh City
	accts := accounts{}
	for i := range 20 {
		id := fmt.Sprintf("acct%02d", i)
		accts[id] = recipients.Recipient{Account: recipients.Account{ID: id, Language: "en", TimeZone: "Asia/Ho_Chi_Minh",
			Units: []ups.Serial{unitB}}}
	}
	e := &env{units: fleet{unitB: {Serial: unitB, Name: "Kho"}}, reports: &reports{rep: week()}, clock: &clock{t: now}}
	var err error
	if e.tmpl, err = templates.Load(""); err != nil {
		t.Fatal(err)
	}
	obs := []*outbox{{}, {}}
	senders := make([]*Sender, len(obs))
	for i := range senders {
		_, js := bustest.Dial(t, cluster.Nodes[i].URL)
		senders[i], err = New(js, Config{Accounts: accts, Units: e.units, Reports: e.reports, Outbox: obs[i], Templates: e.tmpl,
			Trigger: make(chan time.Time), InstanceID: fmt.Sprint(i), Replicas: 3, Now: e.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range senders {
		// As the daemon's supervisor does: a Run that failed (creating
		// the replicated bucket on a fresh cluster can time out) runs
		// again.
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := s.Run(ctx); err != nil {
					t.Logf("Run (run again): %v", err)
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	wait.For(t, "both senders' first look", func() bool { return senders[0].Checks() >= 1 && senders[1].Checks() >= 1 })
	all := append(obs[0].recipients(), obs[1].recipients()...)
	slices.Sort(all)
	if want := accts.List(); !slices.Equal(all, want) {
		t.Fatalf("queued for %v (%d by one, %d by the other), want each of the %d accounts once",
			all, len(obs[0].recipients()), len(obs[1].recipients()), len(want))
	}
}
