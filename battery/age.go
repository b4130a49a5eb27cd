package battery

import (
	"math"
	"time"
)

// Source says where a unit's battery install date comes from, in order
// of precedence: the owner's word beats the unit's battery.date, which
// beats its battery.mfr.date, which beats the day upswatch first saw it.
type Source uint8

// Install date sources, most trusted first.
const (
	SourceNone Source = iota
	SourceOwner
	SourceBatteryDate
	SourceMfrDate
	SourceFirstSeen
	// SourceSwap: a battery change upswatch detected after the date the
	// unit reports (which nobody updated).
	SourceSwap
	numSources
)

var sourceNames = [numSources]string{"none", "owner", "battery.date", "battery.mfr.date", "first_seen", "detected_swap"}

func (s Source) String() string {
	if s < numSources {
		return sourceNames[s]
	}
	return "invalid"
}

// MarshalText encodes the source as its name.
func (s Source) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Ageing constants. VRLA life halves for every 8.3 °C above 25 °C (the
// Arrhenius rule battery makers publish); below 25 °C upswatch does not
// credit slower ageing.
const (
	refTemp       = 25.0
	halvingDegC   = 8.3
	maxAccrualGap = time.Hour // longer gaps age at the calendar rate
	// AgeLimit is the effective age at which battery_age warns.
	AgeLimit = 3 * 365 * 24 * time.Hour
	// MaintenanceLead: battery_maintenance warns this long before
	// battery.date.maintenance.
	MaintenanceLead = 30 * 24 * time.Hour
)

// PlausibleTemp reports whether a temperature reading (°C) can be a
// battery's or enclosure's. Real dumps report 0 for "no sensor", -272
// or 302 for a broken one, and 3e18 for an unset register.
func PlausibleTemp(t float64) bool { return t > 0 && t <= 80 }

// AgeingFactor is how many calendar seconds of life one second at t °C
// consumes.
func AgeingFactor(t float64) float64 {
	if t <= refTemp {
		return 1
	}
	return math.Exp2((t - refTemp) / halvingDegC)
}

// installDate picks the install date by precedence from what is known.
func (u *Unit) installDate() (int64, Source) {
	if u.OwnerDate != 0 {
		return u.OwnerDate, SourceOwner
	}
	d, src := u.reportedDate()
	if u.SwapDate > d {
		return u.SwapDate, SourceSwap
	}
	return d, src
}

func (u *Unit) reportedDate() (int64, Source) {
	switch {
	case u.BatDate != 0:
		return u.BatDate, SourceBatteryDate
	case u.MfrDate != 0:
		return u.MfrDate, SourceMfrDate
	case u.FirstSeen != 0:
		return u.FirstSeen, SourceFirstSeen
	}
	return 0, SourceNone
}

// reinstall recomputes the install date after one of its inputs changed.
// It reports whether the date moved later: another battery, whose life
// the caller starts afresh (Unit.replaced).
func (u *Unit) reinstall(at int64) (later bool) {
	d, src := u.installDate()
	later = u.Install != 0 && d > u.Install
	u.Install, u.InstallSrc = d, src
	return later
}

// accrue adds the temperature-weighted extra age of the time since the
// last reading, at the temperature of the last reading.
func (u *Unit) accrue(at int64, temp float64, ok bool) {
	dt := at - u.LastAt
	if u.LastAt != 0 && dt > 0 && dt <= int64(maxAccrualGap/time.Second) && u.LastTemp != 0 {
		u.ExtraAge += float64(dt) * u.extraRate()
	}
	if !ok {
		temp = 0
	}
	u.LastTemp = float32(temp)
}

// extraRate is AgeingFactor(LastTemp)-1, cached: temperatures change
// far less often than readings arrive.
func (u *Unit) extraRate() float64 {
	if u.rateOf != u.LastTemp || u.rateOf == 0 {
		u.rateOf, u.rate = u.LastTemp, AgeingFactor(float64(u.LastTemp))-1
	}
	return u.rate
}

// Age is the calendar age of the battery at now.
func (u *Unit) Age(now time.Time) time.Duration {
	if u.Install == 0 {
		return 0
	}
	return max(0, now.Sub(time.Unix(u.Install, 0)))
}

// EffectiveAge is the calendar age plus the extra wear of the time spent
// above 25 °C while upswatch watched.
func (u *Unit) EffectiveAge(now time.Time) time.Duration {
	if u.Install == 0 {
		return 0
	}
	return u.Age(now) + time.Duration(u.ExtraAge*float64(time.Second))
}

// AgeLimitAt is when the effective age reaches AgeLimit if the battery
// keeps ageing at the calendar rate from now.
func (u *Unit) AgeLimitAt(now time.Time) time.Time {
	if u.Install == 0 {
		return time.Time{}
	}
	return now.Add(AgeLimit - u.EffectiveAge(now))
}

// SaneRuntime reports whether a battery.runtime (seconds) can be a
// measurement: real dumps report 0 or negative for "unknown", 65535 and
// beyond for an unset register, and days for a unit on no load.
func SaneRuntime(s float64) bool { return s > 0 && s < 65535 && s <= 10*3600 }
