package web

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/battery"
)

// TestBatteryCard renders the unit page's battery card in both
// languages: a measured battery with its forecast and an overdue test,
// and one still measuring its baseline.
func TestBatteryCard(t *testing.T) {
	texts, err := loadCatalog(i18nFS)
	if err != nil {
		t.Fatal(err)
	}
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	c := &Console{texts: texts, pages: pages}
	at := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	measured := &battery.Report{Serial: "110000000001", Seen: true,
		Install: battery.Install{Date: "2023-05-01", Source: battery.SourceBatteryDate},
		AgeDays: 1303, EffectiveAgeDays: 1460, Maintenance: "2027-01-01",
		Health:   battery.Health{SoH: 0.834, Known: true},
		Forecast: battery.Forecast{At: at.AddDate(0, 2, 0), Reason: "health"},
		Tests:    battery.TestsReport{Stale: true, History: []battery.TestReport{{At: at, Result: battery.TestAborted}}}}
	measuring := &battery.Report{Serial: "110000000002", Install: battery.Install{Source: battery.SourceNone},
		Health: battery.Health{BaseDays: 3}}
	for _, tc := range []struct {
		lang string
		rep  *battery.Report
		want []string
		not  []string
	}{
		{"en", measured, []string{"Battery", "2023-05-01 (reported by the UPS)", "3.6 years", "4.0 years effective", "83 %",
			"2027-01-24 (health trend)", "2027-01-01", "aborted", "overdue"}, []string{"Measuring"}},
		{"vi", measured, []string{"Ngày lắp", "2023-05-01 (UPS báo)", "3.6 năm", "xu hướng dung lượng", "bị hủy", "quá hạn"}, nil},
		{"en", measuring, []string{"Unknown", "Measuring (3 of 14 baseline days)", "none seen"}, []string{"Replace by", "overdue"}},
	} {
		v := &view{c: c, Lang: tc.lang, Loc: time.UTC, Now: at,
			Page: unitPage{Row: row{Name: "Office"}, Battery: tc.rep}}
		var buf bytes.Buffer
		if err := pages["unit"].ExecuteTemplate(&buf, "content", v); err != nil {
			t.Fatal(err)
		}
		i := strings.Index(buf.String(), `id="battery"`)
		if i < 0 {
			t.Fatalf("%s: no battery card", tc.lang)
		}
		card := buf.String()[i:]
		card = card[:strings.Index(card, "</section>")]
		for _, w := range tc.want {
			if !strings.Contains(card, w) {
				t.Errorf("%s: card lacks %q:\n%s", tc.lang, w, card)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(card, w) {
				t.Errorf("%s: card shows %q:\n%s", tc.lang, w, card)
			}
		}
	}
	// No battery store: no card.
	v := &view{c: c, Lang: "en", Loc: time.UTC, Now: at, Page: unitPage{Row: row{Name: "Office"}}}
	var buf bytes.Buffer
	if err := pages["unit"].ExecuteTemplate(&buf, "content", v); err != nil || strings.Contains(buf.String(), `id="battery"`) {
		t.Fatalf("without a battery report: %v, card shown %v", err, strings.Contains(buf.String(), `id="battery"`))
	}
}
