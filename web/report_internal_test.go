package web

import (
	"net/url"
	"testing"
	"time"
)

func TestReportRange(t *testing.T) {
	hcm, err := time.LoadLocation("Asia/Ho_Chi_Minh")
	if err != nil {
		t.Fatal(err)
	}
	d := func(loc *time.Location, y int, m time.Month, day, hh, mm int) time.Time {
		return time.Date(y, m, day, hh, mm, 0, 0, loc)
	}
	wed := d(time.UTC, 2026, 12, 2, 2, 30) // Wednesday 09:30 in Ho Chi Minh City
	for _, tt := range []struct {
		name     string
		q        url.Values
		now      time.Time
		loc      *time.Location
		rng      string
		from, to time.Time
		problem  string
	}{
		{"default: the last 7 days", url.Values{}, wed, hcm, "7d", wed.AddDate(0, 0, -7), wed, ""},
		{"30 days", url.Values{"range": {"30d"}}, wed, hcm, "30d", wed.AddDate(0, 0, -30), wed, ""},
		{"last week, in the person's zone", url.Values{"range": {"lastweek"}}, wed, hcm, "lastweek",
			d(hcm, 2026, 11, 23, 0, 0), d(hcm, 2026, 11, 30, 0, 0), ""},
		// Monday 00:30 there (Sunday 17:30 UTC): today's Monday ends it.
		{"last week, early on a Monday", url.Values{"range": {"lastweek"}}, d(time.UTC, 2026, 11, 29, 17, 30), hcm, "lastweek",
			d(hcm, 2026, 11, 23, 0, 0), d(hcm, 2026, 11, 30, 0, 0), ""},
		// Sunday 23:30 UTC: the week that ended a week ago.
		{"last week, late on a Sunday", url.Values{"range": {"lastweek"}}, d(time.UTC, 2026, 11, 29, 23, 30), time.UTC, "lastweek",
			d(time.UTC, 2026, 11, 16, 0, 0), d(time.UTC, 2026, 11, 23, 0, 0), ""},
		{"custom", url.Values{"from": {"2026-11-01T08:00"}, "to": {"2026-11-02T08:00"}}, wed, hcm, "custom",
			d(hcm, 2026, 11, 1, 8, 0), d(hcm, 2026, 11, 2, 8, 0), ""},
		{"custom beyond the API's 92 days", url.Values{"from": {"2026-01-01T00:00"}, "to": {"2026-11-01T00:00"}}, wed, hcm, "7d",
			wed.AddDate(0, 0, -7), wed, rangeTooLong},
		{"custom ending before it starts", url.Values{"from": {"2026-11-02T00:00"}, "to": {"2026-11-01T00:00"}}, wed, hcm, "7d",
			wed.AddDate(0, 0, -7), wed, rangeInvalid},
		{"custom with one end only", url.Values{"from": {"2026-11-02T00:00"}}, wed, hcm, "7d",
			wed.AddDate(0, 0, -7), wed, rangeInvalid},
		{"custom not a date", url.Values{"from": {"yesterday"}, "to": {"2026-11-01T00:00"}, "range": {"30d"}}, wed, hcm, "30d",
			wed.AddDate(0, 0, -30), wed, rangeInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rng, from, to, problem := reportRange(tt.q, tt.now, tt.loc)
			if rng != tt.rng || !from.Equal(tt.from) || !to.Equal(tt.to) || problem != tt.problem {
				t.Errorf("%s %s to %s (%q), want %s %s to %s (%q)", rng, from, to, problem, tt.rng, tt.from, tt.to, tt.problem)
			}
		})
	}
}
