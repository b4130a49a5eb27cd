package battery

import (
	"time"

	"github.com/upswatch/upswatch/ups"
)

// Report is a unit's battery as the API shows it.
type Report struct {
	Serial ups.Serial `json:"serial"`
	// Seen: upswatch has readings of the unit (else only what the owner
	// entered, if anything).
	Seen      bool      `json:"seen"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	Install   Install   `json:"install"`
	// AgeDays and EffectiveAgeDays (temperature-weighted) are in days;
	// battery_age warns at AgeLimitDays effective.
	AgeDays          float64     `json:"age_days"`
	EffectiveAgeDays float64     `json:"effective_age_days"`
	AgeLimitDays     float64     `json:"age_limit_days"`
	Temperature      float64     `json:"temperature_c,omitempty"`
	Maintenance      string      `json:"maintenance_date,omitempty"`
	Health           Health      `json:"health"`
	Forecast         Forecast    `json:"forecast"`
	Swaps            []Swap      `json:"swaps"`
	Tests            TestsReport `json:"tests"`
	// Alerts are the battery alerts firing now.
	Alerts []string `json:"alerts"`
}

// Install is the install date and where it comes from, with the dates
// it was chosen from (YYYY-MM-DD; absent when unknown or rejected).
type Install struct {
	Date        string `json:"date,omitempty"`
	Source      Source `json:"source"`
	Owner       string `json:"owner_date,omitempty"`
	BatteryDate string `json:"battery_date,omitempty"`
	MfrDate     string `json:"mfr_date,omitempty"`
	Detected    string `json:"detected_swap_date,omitempty"`
}

// TestsReport is the self-test history.
type TestsReport struct {
	IntervalDays float64      `json:"interval_days"`
	Stale        bool         `json:"stale"`
	History      []TestReport `json:"history"`
}

// TestReport is one self-test result.
type TestReport struct {
	At     time.Time  `json:"at"`
	Result TestResult `json:"result"`
}

func dateString(unix int64) string {
	if unix == 0 {
		return ""
	}
	return time.Unix(unix, 0).UTC().Format(time.DateOnly)
}

// Report describes the unit's battery as of now.
func (u *Unit) Report(now time.Time) Report {
	rep := Report{
		Serial: u.Serial,
		Seen:   u.FirstSeen != 0,
		Install: Install{Date: dateString(u.Install), Source: u.InstallSrc, Owner: dateString(u.OwnerDate),
			BatteryDate: dateString(u.BatDate), MfrDate: dateString(u.MfrDate), Detected: dateString(u.SwapDate)},
		AgeDays:          u.Age(now).Hours() / 24,
		EffectiveAgeDays: u.EffectiveAge(now).Hours() / 24,
		AgeLimitDays:     AgeLimit.Hours() / 24,
		Temperature:      float64(u.LastTemp),
		Maintenance:      dateString(u.Maint),
		Health:           u.HealthAt(now),
		Forecast:         u.ForecastAt(now),
		Swaps:            u.SwapList(),
		Tests:            TestsReport{IntervalDays: u.TestInterval().Hours() / 24, Stale: u.TestStale(now), History: []TestReport{}},
		Alerts:           []string{},
	}
	if u.FirstSeen != 0 {
		rep.FirstSeen = time.Unix(u.FirstSeen, 0).UTC()
		rep.LastSeen = time.Unix(u.LastAt, 0).UTC()
	}
	for _, t := range u.History() {
		rep.Tests.History = append(rep.Tests.History, TestReport{time.Unix(int64(t.At), 0).UTC(), t.R})
	}
	for i, a := range u.Alerts {
		if a.Since != 0 {
			rep.Alerts = append(rep.Alerts, alertRules[i])
		}
	}
	return rep
}
