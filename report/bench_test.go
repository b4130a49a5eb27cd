package report

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/store/influx"
	"github.com/upswatch/upswatch/store/sqlite"
	"github.com/upswatch/upswatch/ups"
)

// The site's size: the 200 units; fewer for a quick look.
var siteUnits = flag.Int("siteweek.units", 200, "units of BenchmarkSiteWeek's site")

// siteEvery is the units' reporting interval: 60,480 readings a unit and
// about 12 million for 200 over the week.
const siteEvery = 10 * time.Second

func siteSerial(u int) ups.Serial { return ups.Serial(fmt.Sprintf("%012d", 300000000000+u)) }

// siteOutage is unit u's outage of the week: a different day and hour
// per unit, 2 to 11 minutes long.
func siteOutage(u int) [2]time.Time {
	start := at(u%7, 10+u%8, 0, 0)
	return [2]time.Time{start, start.Add(time.Duration(2+u%10) * time.Minute)}
}

// siteBoost is unit u's 20 minutes of boosting.
func siteBoost(u int) [2]time.Time {
	start := at((u+3)%7, 8, 0, 0)
	return [2]time.Time{start, start.Add(20 * time.Minute)}
}

// siteReading is unit u's reading k of the week: what a NUT host sends
// (status, voltages, frequency, charge, runtime, load, two texts).
func siteReading(u, k int) ups.Reading {
	ts := monday.Add(time.Duration(k) * siteEvery)
	status, volts, hz, charge, runtime := "OL", 228+float64(k%5), 50.0, 100.0, 3000.0
	out, boost := siteOutage(u), siteBoost(u)
	switch {
	case in(ts, out[0], out[1]):
		status, volts, hz, charge, runtime = "OB DISCHRG", 0, 0, 100-float64(ts.Sub(out[0])/time.Minute), 2400
	case in(ts, boost[0], boost[1]):
		status, volts = "OL BOOST", 205
	}
	r := ups.Reading{Serial: siteSerial(u), Time: ts}
	r.SetText("ups.status", status)
	r.SetNum("input.voltage", volts)
	r.SetNum("input.voltage.nominal", 230)
	r.SetNum("input.frequency", hz)
	r.SetNum("battery.charge", charge)
	r.SetNum("battery.runtime", runtime)
	r.SetNum("ups.load", 30+float64(k%7))
	r.SetText("ups.test.result", "Done and passed")
	if !ts.Before(out[0]) {
		r.SetText("input.transfer.reason", "input voltage out of range")
	}
	return r
}

// loadSite writes the site's week into h, batch readings a call from
// writers goroutines, and returns the on_battery alerts of its outages.
func loadSite(b *testing.B, h store.History, units, batch, writers int) timeline {
	b.Helper()
	perUnit := int(week / siteEvery)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			rs := make([]ups.Reading, 0, batch)
			// Time-major within each writer's units, as the recorder
			// writes: every unit's readings of a moment together.
			for k := range perUnit {
				for u := w; u < units; u += writers {
					rs = append(rs, siteReading(u, k))
					if len(rs) == batch {
						if err := h.WriteReadings(context.Background(), rs); err != nil {
							errs <- err
							return
						}
						rs = rs[:0]
					}
				}
			}
			if len(rs) > 0 {
				if err := h.WriteReadings(context.Background(), rs); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("load: %v", err)
	}
	n := units * perUnit
	took := time.Since(start)
	b.Logf("loaded %d readings of %d units in %s (%.0f readings/s)", n, units, took.Round(time.Second), float64(n)/took.Seconds())
	var tl timeline
	for u := range units {
		o := siteOutage(u)
		fp := fmt.Sprintf("%s/on_battery/%d", siteSerial(u), o[0].UnixMilli())
		tl = append(tl,
			rules.Event{Kind: rules.Firing, Rule: "on_battery", Serial: siteSerial(u), At: o[0].Add(6 * time.Second), StartedAt: o[0], Fingerprint: fp},
			rules.Event{Kind: rules.Resolved, Rule: "on_battery", Serial: siteSerial(u), At: o[1], StartedAt: o[0], EndedAt: o[1], Fingerprint: fp})
	}
	return tl
}

// benchSiteWeek computes the site's week report, checking a few of its
// numbers so a broken load or store cannot pass for a fast one.
func benchSiteWeek(b *testing.B, h store.History, batch, writers int) {
	units := *siteUnits
	tl := loadSite(b, h, units, batch, writers)
	r, err := New(h, tl)
	if err != nil {
		b.Fatal(err)
	}
	serials := make([]ups.Serial, units)
	for u := range serials {
		serials[u] = siteSerial(u)
	}
	var wantTotal float64
	for u := range units {
		o := siteOutage(u)
		wantTotal += o[1].Sub(o[0]).Seconds()
	}
	for b.Loop() {
		rep, err := r.Units(b.Context(), serials, monday, monday.Add(week))
		if err != nil {
			b.Fatal(err)
		}
		if rep.Outages.Count != units || rep.Outages.TotalS != wantTotal || rep.BoostS != float64(units)*1200 ||
			rep.Transfers["input voltage out of range"] != units || rep.Mains.VoltageWindows == 0 {
			b.Fatalf("report: %d outages, %gs (want %d, %gs), boost %gs, transfers %v, %d voltage windows",
				rep.Outages.Count, rep.Outages.TotalS, units, wantTotal, rep.BoostS, rep.Transfers, rep.Mains.VoltageWindows)
		}
	}
	b.ReportMetric(float64(units*int(week/siteEvery)), "readings")
}

// BenchmarkSiteWeek: the report of a site's week, 200 units at 10 s
// readings (about 12 million), on each history store. The load takes
// minutes and is not timed; never part of `make test`:
//
//	go test -run '^$' -bench SiteWeek -benchtime 3x -timeout 2h ./report/
func BenchmarkSiteWeek(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		s, err := sqlite.Open(filepath.Join(b.TempDir(), "history.db"), sqlite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		// One writer, as the store has one write connection; big
		// transactions, one fsync each.
		benchSiteWeek(b, s, 20_000, 1)
	})
	b.Run("influx", func(b *testing.B) {
		inf := testenv.Influxd(b)
		if err := inf.Exec("CREATE DATABASE siteweek"); err != nil {
			b.Fatal(err)
		}
		s, err := influx.New(b.Context(), influx.Config{
			URL: inf.URL, Org: inf.Org, Bucket: "siteweek/autogen", Timeout: 10 * time.Minute,
			BatchSize: 10_000, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		benchSiteWeek(b, s, 20_000, 2)
	})
}
