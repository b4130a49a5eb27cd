package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/upswatch/upswatch/access"
	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/keyring/keyringtest"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/store/sqlite"
	"github.com/upswatch/upswatch/ups"
)

// BenchmarkFleetPage measures the server time of the fleet page for an
// admin seeing 1,000 units in 20 sites, each with a latest reading, on
// the real stores (registry and sessions in NATS KV, SQLite history).
// Target: at most 100 ms.
func BenchmarkFleetPage(b *testing.B) {
	ctx := context.Background()
	_, _, js := bustest.Server(b)
	units, err := registry.Open(ctx, js, registry.Options{})
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = units.Run(ctx) }()
	<-units.Ready()
	hist, err := sqlite.Open(filepath.Join(b.TempDir(), "history.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = hist.Close() })
	accounts, err := recipients.Open(ctx, js, recipients.Options{Sealer: keyringtest.Records(b)})
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = accounts.Run(ctx) }()
	<-accounts.Ready()
	logins, err := access.Open(ctx, js, access.Options{})
	if err != nil {
		b.Fatal(err)
	}
	const n = 1000
	now := time.Now().UTC()
	var rs []ups.Reading
	for i := range n {
		serial := ups.Serial(fmt.Sprintf("9003%08d", i))
		if _, _, err := units.Add(ctx, serial, fmt.Sprintf("Rack %d", i), fmt.Sprintf("site-%02d", i%20)); err != nil {
			b.Fatal(err)
		}
		r := ups.Reading{Serial: serial, Time: now.Add(-time.Duration(i) * time.Second)}
		r.SetText("ups.status", "OL")
		for _, v := range []string{"battery.charge", "battery.runtime", "ups.load", "input.voltage"} {
			r.SetNum(v, float64(50+i%50))
		}
		rs = append(rs, r)
	}
	if err := hist.WriteReadings(ctx, rs); err != nil {
		b.Fatal(err)
	}
	for len(units.List()) < n { // the registry's view catches up
		time.Sleep(10 * time.Millisecond)
	}
	c, err := New(Config{AdminToken: "t", Units: units, History: hist, Alerts: engine.NewAlerts(js, units),
		Accounts: accounts, Access: logins})
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := logins.NewSession(ctx, "", true)
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: tok})
	var size int
	for b.Loop() {
		w := httptest.NewRecorder()
		c.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("fleet page: %d", w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size)/1024, "KiB/page")
}
