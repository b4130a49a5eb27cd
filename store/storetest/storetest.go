// Package storetest checks that history backends agree: the same readings
// written to each must read back the same.
package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// History is a backend that keeps status and texts.
type History interface {
	store.History
	store.StatusHistory
}

// PowerHistory is a backend that tells when a unit ran on battery.
type PowerHistory interface {
	store.History
	store.PowerHistory
}

// OnBattery checks h's store.PowerHistory: spans of OB readings, from the
// first to the next reading that is not, calibration and self-test
// excluded, readings without a status ignored, the last span open when
// the range ends on battery, and another unit's readings not mixed in.
func OnBattery(t *testing.T, h PowerHistory) {
	t.Helper()
	const unitA, unitB ups.Serial = "700000000011", "700000000012"
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	var rs []ups.Reading
	for _, r := range []struct {
		sec    int
		status string
	}{
		{0, "OL"}, {10, "OB DISCHRG"}, {13, "OL CHRG"}, // a 3 s blip
		{20, "OB CAL"}, {25, "OL"}, // calibration: not an outage
		{30, "OB"}, {35, ""}, {40, "OB LB"}, {50, "OL"}, // a reading without status inside
		{60, "OB TEST"}, {62, "OL"},
		{70, "OB"}, // still on battery at the end
	} {
		rd := ups.Reading{Serial: unitA, Time: at(r.sec)}
		if r.status != "" {
			rd.SetText("ups.status", r.status)
		}
		rd.SetNum("battery.charge", 90)
		other := ups.Reading{Serial: unitB, Time: at(r.sec)}
		other.SetText("ups.status", "OB")
		rs = append(rs, rd, other)
	}
	if err := h.WriteReadings(t.Context(), rs); err != nil {
		t.Fatalf("WriteReadings: %v", err)
	}
	for _, tt := range []struct {
		name     string
		from, to int
		want     []store.Span
	}{
		{"all", -10, 100, []store.Span{{Start: at(10), End: at(13)}, {Start: at(30), End: at(50)}, {Start: at(70)}}},
		{"cut inside an outage", 32, 45, []store.Span{{Start: at(40)}}},
		{"on line throughout", 0, 10, nil},
		{"to is exclusive", 0, 13, []store.Span{{Start: at(10)}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := h.OnBattery(t.Context(), unitA, at(tt.from), at(tt.to))
			if err != nil {
				t.Fatal(err)
			}
			same := len(got) == len(tt.want)
			for i := 0; same && i < len(got); i++ {
				same = got[i].Start.Equal(tt.want[i].Start) && got[i].End.Equal(tt.want[i].End)
			}
			if !same {
				t.Errorf("spans %v, want %v", got, tt.want)
			}
		})
	}
}

// StatusChanges checks h's store.StatusHistory on one scripted unit: a
// boost, a transfer reason sent without a status, a self-test and its
// result, readings that repeat the state (no change), another unit's
// readings interleaved, a range that starts mid-way and one that ends
// before a change.
func StatusChanges(t *testing.T, h History) {
	t.Helper()
	const unitA, unitB ups.Serial = "700000000001", "700000000002"
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	const result, reason = "ups.test.result", "input.transfer.reason"
	var rs []ups.Reading
	for _, r := range []struct {
		sec    int
		status string
		texts  []string // name, value, ...
	}{
		{0, "OL", []string{result, "No test initiated", "device.model", "X"}},
		{10, "OL", []string{result, "No test initiated", "device.model", "Y"}}, // a text not asked changes: no change
		{20, "OL BOOST", []string{result, "No test initiated"}},
		{30, "", []string{reason, "blackout"}}, // no status: BOOST carries on
		{40, "OL BOOST", nil},
		{50, "OL TEST", []string{result, "In progress"}},
		{60, "OL", []string{result, "Done and passed"}},
		{70, "OL", []string{result, "Done and passed", reason, "blackout"}},
	} {
		rd := ups.Reading{Serial: unitA, Time: at(r.sec)}
		if r.status != "" {
			rd.SetText("ups.status", r.status)
		}
		for i := 0; i < len(r.texts); i += 2 {
			rd.SetText(r.texts[i], r.texts[i+1])
		}
		rd.SetNum("battery.charge", 100)
		other := ups.Reading{Serial: unitB, Time: at(r.sec)}
		other.SetText("ups.status", "OB TRIM")
		other.SetText(result, "Done and error")
		rs = append(rs, rd, other)
	}
	if err := h.WriteReadings(t.Context(), rs); err != nil {
		t.Fatalf("WriteReadings: %v", err)
	}
	ch := func(sec int, f ups.Flag, texts ...string) store.StatusChange {
		return store.StatusChange{Time: at(sec), Flags: f, Texts: texts}
	}
	for _, tt := range []struct {
		name     string
		from, to int
		texts    []string
		want     []store.StatusChange
	}{
		{"all", -10, 100, []string{result, reason}, []store.StatusChange{
			ch(0, ups.OL, "No test initiated", ""),
			ch(20, ups.OL|ups.BOOST, "No test initiated", ""),
			ch(30, ups.OL|ups.BOOST, "No test initiated", "blackout"),
			ch(50, ups.OL|ups.TEST, "In progress", "blackout"),
			ch(60, ups.OL, "Done and passed", "blackout"),
		}},
		{"from mid-way, to exclusive", 35, 60, []string{result, reason}, []store.StatusChange{
			ch(40, ups.OL|ups.BOOST, "", ""), // the first reading in range is the first state
			ch(50, ups.OL|ups.TEST, "In progress", ""),
		}},
		{"status only", 0, 100, nil, []store.StatusChange{
			ch(0, ups.OL), ch(20, ups.OL|ups.BOOST), ch(50, ups.OL|ups.TEST), ch(60, ups.OL),
		}},
		{"a text alone", 0, 100, []string{reason}, []store.StatusChange{
			ch(0, ups.OL, ""), ch(20, ups.OL|ups.BOOST, ""), ch(30, ups.OL|ups.BOOST, "blackout"),
			ch(50, ups.OL|ups.TEST, "blackout"), ch(60, ups.OL, "blackout"),
		}},
		{"nothing in range", 80, 90, []string{result}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := h.StatusChanges(t.Context(), unitA, at(tt.from), at(tt.to), tt.texts...)
			if err != nil {
				t.Fatal(err)
			}
			same := len(got) == len(tt.want)
			for i := 0; same && i < len(got); i++ {
				g, w := got[i], tt.want[i]
				same = g.Time.Equal(w.Time) && g.Flags == w.Flags && slices.Equal(g.Texts, w.Texts)
			}
			if !same {
				t.Errorf("changes:\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}
