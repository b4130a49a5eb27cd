package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"time"

	"go.yaml.in/yaml/v3"
)

// Common holds the timing every stateful rule shares.
type Common struct {
	// Enabled turns the rule on or off.
	Enabled bool `yaml:"enabled"`
	// For is the pending period: the condition must hold that long
	// before the alert fires.
	For time.Duration `yaml:"for"`
	// KeepFiringFor keeps a firing alert up that long after its clear
	// condition was first met, so a short return to normal does not
	// resolve and re-fire it.
	KeepFiringFor time.Duration `yaml:"keep_firing_for"`
	// RepeatEvery sends a reminder while the alert fires; 0 = never.
	RepeatEvery time.Duration `yaml:"repeat_every"`
}

// OnBatteryConfig configures on_battery.
type OnBatteryConfig struct {
	Common   `yaml:",inline"`
	Severity Severity `yaml:"severity"`
	// NoInputBelow is the input voltage under which the mains is taken
	// as absent. It decides the quirks: OL+DISCHRG (CyberPower UT) and
	// contradictory OL+OB mean on battery only when input.voltage is
	// reported and below it.
	NoInputBelow float64 `yaml:"no_input_below"`
	// SuppressDuringTest ignores OB while CAL or TEST is set: a self-test
	// or runtime calibration runs on battery on purpose.
	SuppressDuringTest bool `yaml:"suppress_during_test"`
}

// PowerRestoredConfig configures the notice sent when on_battery
// resolves.
type PowerRestoredConfig struct {
	// Enabled false keeps the resolution in the record but marks it
	// Silent.
	Enabled bool `yaml:"enabled"`
}

// PowerUnstableConfig configures flap detection on the mains.
type PowerUnstableConfig struct {
	Enabled  bool     `yaml:"enabled"`
	Severity Severity `yaml:"severity"`
	// Interruptions is how many on-line to on-battery transitions within
	// Window make the power unstable. Counting uses 10 buckets of
	// Window/10, so the window is exact to a tenth.
	Interruptions int           `yaml:"interruptions"`
	Window        time.Duration `yaml:"window"`
	// Quiet is how long the mains must stay on line, with no transition,
	// before power_unstable resolves.
	Quiet time.Duration `yaml:"quiet"`
	// OnBatteryFor replaces on_battery's `for` while the power is
	// unstable: blips no longer page, a real outage still does.
	OnBatteryFor time.Duration `yaml:"on_battery_for"`
}

// LowBatteryConfig configures low_battery.
type LowBatteryConfig struct {
	Common   `yaml:",inline"`
	Severity Severity `yaml:"severity"`
	// ChargeAtOrBelow and RuntimeAtOrBelow are the fallbacks for the
	// unit's battery.charge.low and battery.runtime.low.
	ChargeAtOrBelow  float64       `yaml:"charge_at_or_below"`
	RuntimeAtOrBelow time.Duration `yaml:"runtime_at_or_below"`
	// UseDeviceThresholds prefers the unit's reported thresholds.
	UseDeviceThresholds bool `yaml:"use_device_thresholds"`
	// The alert clears once charge exceeds the threshold by ClearCharge
	// points and runtime by ClearRuntime (and LB is gone).
	ClearCharge  float64       `yaml:"clear_charge_margin"`
	ClearRuntime time.Duration `yaml:"clear_runtime_margin"`
}

// BatteryWarningConfig configures battery_warning.
type BatteryWarningConfig struct {
	Common   `yaml:",inline"`
	Severity Severity `yaml:"severity"`
	// ChargeBelow is the fallback for battery.charge.warning.
	ChargeBelow         float64 `yaml:"charge_below"`
	UseDeviceThresholds bool    `yaml:"use_device_thresholds"`
	ClearCharge         float64 `yaml:"clear_charge_margin"`
	// OnBatteryOnly: a battery recharging after an outage is below the
	// warning level for a while; that is no news.
	OnBatteryOnly bool `yaml:"on_battery_only"`
}

// SimpleConfig configures a rule driven by one status flag.
type SimpleConfig struct {
	Common   `yaml:",inline"`
	Severity Severity `yaml:"severity"`
}

// OverloadConfig configures overload.
type OverloadConfig struct {
	Common `yaml:",inline"`
	// Window is the span of the load mean. It is kept as a time-weighted
	// exponential mean with time constant Window/2 (the mean age of a
	// sliding window's samples), in constant memory.
	Window             time.Duration `yaml:"window"`
	WarnAbove          float64       `yaml:"warn_above"`
	CriticalAbove      float64       `yaml:"critical_above"`
	WarnClearBelow     float64       `yaml:"warn_clear_below"`
	CriticalClearBelow float64       `yaml:"critical_clear_below"`
}

// InputVoltageConfig configures input_voltage.
type InputVoltageConfig struct {
	Common `yaml:",inline"`
	// Nominal is the fallback for input.voltage.nominal. 0 infers it
	// from the unit's first reading with mains (the nearest of 100, 120
	// and 230 V) and remembers it: most units report their nominal, and
	// a fixed 230 would put every silent 120 V unit in alarm.
	Nominal             float64 `yaml:"nominal"`
	UseDeviceThresholds bool    `yaml:"use_device_thresholds"`
	// Warning outside nominal +/- TolerancePct; clears inside
	// +/- ClearPct.
	TolerancePct float64 `yaml:"tolerance_pct"`
	ClearPct     float64 `yaml:"clear_pct"`
	// Critical beyond input.transfer.low/high, or beyond nominal
	// +/- CriticalPct when the unit does not report them.
	CriticalPct float64 `yaml:"critical_pct"`
}

// InputFrequencyConfig configures input_frequency.
type InputFrequencyConfig struct {
	Common `yaml:",inline"`
	// Nominal is the fallback for input.frequency.nominal; 0 picks 50 or
	// 60 Hz, whichever is nearer the reading.
	Nominal             float64 `yaml:"nominal"`
	UseDeviceThresholds bool    `yaml:"use_device_thresholds"`
	TolerancePct        float64 `yaml:"tolerance_pct"`
	ClearPct            float64 `yaml:"clear_pct"`
	CriticalHz          float64 `yaml:"critical_hz"`
}

// UPSAlarmConfig configures ups_alarm.
type UPSAlarmConfig struct {
	Common   `yaml:",inline"`
	Severity Severity `yaml:"severity"`
	// Ignore lists ups.alarm texts that mean "no alarm" on some models.
	Ignore []string `yaml:"ignore"`
}

// TemperatureConfig configures temperature (degrees Celsius).
type TemperatureConfig struct {
	Common            `yaml:",inline"`
	BatteryWarnAt     float64 `yaml:"battery_warn_at"`
	BatteryCriticalAt float64 `yaml:"battery_critical_at"`
	AmbientWarnAt     float64 `yaml:"ambient_warn_at"`
	AmbientCriticalAt float64 `yaml:"ambient_critical_at"`
	ClearMargin       float64 `yaml:"clear_margin"`
}

// SelfTestConfig configures self_test_failed.
type SelfTestConfig struct {
	Common   `yaml:",inline"`
	Severity Severity `yaml:"severity"`
	// FailureWords: ups.test.result is a failure when it contains one of
	// them (case-insensitive). Vendors word passes in dozens of ways
	// ("Done and passed", "OK", "No test initiated", "0"); a list of
	// failure words cries wolf less than a list of passes.
	FailureWords []string `yaml:"failure_words"`
}

// CommLostConfig configures comm_lost.
type CommLostConfig struct {
	Enabled bool `yaml:"enabled"`
	// Severity when the unit was last seen on line; on battery it is
	// always critical.
	Severity Severity `yaml:"severity"`
	// Factor times the unit's reporting interval without a reading
	// fires the alert.
	Factor float64 `yaml:"factor"`
	// The interval is learned from the gaps between readings, starting
	// at DefaultInterval and kept within [MinInterval, MaxInterval].
	DefaultInterval time.Duration `yaml:"default_interval"`
	MinInterval     time.Duration `yaml:"min_interval"`
	MaxInterval     time.Duration `yaml:"max_interval"`
	RepeatEvery     time.Duration `yaml:"repeat_every"`
}

// RuleSet is the configuration of every rule. A site or unit override is a
// partial RuleSet laid over its parent.
type RuleSet struct {
	OnBattery      OnBatteryConfig      `yaml:"on_battery"`
	PowerRestored  PowerRestoredConfig  `yaml:"power_restored"`
	PowerUnstable  PowerUnstableConfig  `yaml:"power_unstable"`
	LowBattery     LowBatteryConfig     `yaml:"low_battery"`
	BatteryWarning BatteryWarningConfig `yaml:"battery_warning"`
	ReplaceBattery SimpleConfig         `yaml:"replace_battery"`
	Overload       OverloadConfig       `yaml:"overload"`
	InputVoltage   InputVoltageConfig   `yaml:"input_voltage"`
	InputFrequency InputFrequencyConfig `yaml:"input_frequency"`
	Bypass         SimpleConfig         `yaml:"bypass"`
	UPSOff         SimpleConfig         `yaml:"ups_off"`
	FSD            SimpleConfig         `yaml:"fsd"`
	UPSAlarm       UPSAlarmConfig       `yaml:"ups_alarm"`
	Temperature    TemperatureConfig    `yaml:"temperature"`
	SelfTestFailed SelfTestConfig       `yaml:"self_test_failed"`
	CommLost       CommLostConfig       `yaml:"comm_lost"`
}

// Config is the file format of configs/rules.yaml.
type Config struct {
	// HistoricalAfter: an alert whose whole life ended more than this
	// before the engine evaluated it is recorded as historical.
	HistoricalAfter time.Duration `yaml:"historical_after"`
	Rules           RuleSet       `yaml:"rules"`
	// Sites and Units hold overrides keyed by site id and serial. A unit
	// override applies on top of its site's.
	Sites map[string]RuleSet `yaml:"sites"`
	Units map[string]RuleSet `yaml:"units"`
	// Areas is the area grouping of units (site_outage and
	// site_unreachable), parsed by package area; kept here as written so
	// the one rules file holds it.
	Areas yaml.Node `yaml:"areas"`

	// unitNodes keeps the unit overrides as written, to lay them over a
	// site's rules as well as over the global ones. A Config built in Go
	// has none: its Units apply whatever the site.
	unitNodes map[string]yaml.Node
}

// unitOnSite returns a unit's override laid over a site's rules.
func (c *Config) unitOnSite(serial, site string) (RuleSet, error) {
	n, ok := c.unitNodes[serial]
	if !ok {
		return c.Units[serial], nil
	}
	rs := c.Sites[site].clone()
	if err := n.Decode(&rs); err != nil {
		return RuleSet{}, fmt.Errorf("units.%s over sites.%s: %w", serial, site, err)
	}
	return rs, nil
}

// DefaultRules returns the built-in catalog, the values of PRODUCT.md.
func DefaultRules() RuleSet {
	on := func(d time.Duration) Common { return Common{Enabled: true, For: d} }
	return RuleSet{
		OnBattery: OnBatteryConfig{Common: on(6 * time.Second), Severity: Warning,
			NoInputBelow: 50, SuppressDuringTest: true},
		PowerRestored: PowerRestoredConfig{Enabled: true},
		PowerUnstable: PowerUnstableConfig{Enabled: true, Severity: Warning, Interruptions: 3,
			Window: 10 * time.Minute, Quiet: 10 * time.Minute, OnBatteryFor: time.Minute},
		LowBattery: LowBatteryConfig{Common: on(0), Severity: Critical, ChargeAtOrBelow: 20,
			RuntimeAtOrBelow: 180 * time.Second, UseDeviceThresholds: true,
			ClearCharge: 5, ClearRuntime: 60 * time.Second},
		BatteryWarning: BatteryWarningConfig{Common: on(0), Severity: Warning, ChargeBelow: 50,
			UseDeviceThresholds: true, ClearCharge: 5, OnBatteryOnly: true},
		ReplaceBattery: SimpleConfig{Common: Common{Enabled: true, RepeatEvery: 12 * time.Hour},
			Severity: Warning},
		Overload: OverloadConfig{Common: on(0), Window: 10 * time.Minute, WarnAbove: 80,
			CriticalAbove: 95, WarnClearBelow: 70, CriticalClearBelow: 85},
		InputVoltage: InputVoltageConfig{Common: on(60 * time.Second), Nominal: 0,
			UseDeviceThresholds: true, TolerancePct: 10, ClearPct: 8, CriticalPct: 15},
		InputFrequency: InputFrequencyConfig{Common: on(10 * time.Second), Nominal: 0,
			UseDeviceThresholds: true, TolerancePct: 1, ClearPct: 0.8, CriticalHz: 3},
		Bypass: SimpleConfig{Common: on(0), Severity: Warning},
		UPSOff: SimpleConfig{Common: on(30 * time.Second), Severity: Critical},
		FSD:    SimpleConfig{Common: on(0), Severity: Critical},
		UPSAlarm: UPSAlarmConfig{Common: on(0), Severity: Warning,
			Ignore: []string{"0", "none", "no alarm"}},
		Temperature: TemperatureConfig{Common: on(0), BatteryWarnAt: 35, BatteryCriticalAt: 45,
			AmbientWarnAt: 40, AmbientCriticalAt: 60, ClearMargin: 2},
		SelfTestFailed: SelfTestConfig{Common: on(0), Severity: Warning,
			FailureWords: []string{"fail", "error", "warning", "bad"}},
		CommLost: CommLostConfig{Enabled: true, Severity: Warning, Factor: 3,
			DefaultInterval: time.Minute, MinInterval: 20 * time.Second,
			MaxInterval: 15 * time.Minute, RepeatEvery: 5 * time.Minute},
	}
}

// DefaultConfig returns the configuration used when no file is given.
func DefaultConfig() Config {
	return Config{HistoricalAfter: time.Hour, Rules: DefaultRules()}
}

// ErrInvalidConfig is returned (wrapped) for a configuration that does not
// parse or validate.
var ErrInvalidConfig = errors.New("invalid rules configuration")

// fileShape mirrors Config but keeps the overrides as YAML nodes, so they
// can be laid over their parent: a key absent from an override keeps the
// parent's value.
type fileShape struct {
	HistoricalAfter time.Duration        `yaml:"historical_after"`
	Rules           RuleSet              `yaml:"rules"`
	Sites           map[string]yaml.Node `yaml:"sites"`
	Units           map[string]yaml.Node `yaml:"units"`
	Areas           yaml.Node            `yaml:"areas"`
}

// ParseConfig parses and validates a rules file. Unknown keys are errors.
func ParseConfig(data []byte) (Config, error) {
	// First pass, strict: unknown keys and type errors, with line numbers.
	var strict Config
	if err := decodeStrict(data, &strict); err != nil {
		return Config{}, err
	}
	// Second pass: defaults, then the file over them, then each override
	// over the global rules.
	def := DefaultConfig()
	shape := fileShape{HistoricalAfter: def.HistoricalAfter, Rules: def.Rules}
	if err := decodeStrict(data, &shape); err != nil {
		return Config{}, err
	}
	cfg := Config{HistoricalAfter: shape.HistoricalAfter, Rules: shape.Rules, Areas: shape.Areas}
	var errs []error
	if cfg.HistoricalAfter < 0 {
		errs = append(errs, fmt.Errorf("historical_after: must not be negative"))
	}
	errs = append(errs, cfg.Rules.validate("rules")...)
	overlay := func(kind string, nodes map[string]yaml.Node) map[string]RuleSet {
		if len(nodes) == 0 {
			return nil
		}
		m := make(map[string]RuleSet, len(nodes))
		for _, k := range sortedKeys(nodes) {
			n := nodes[k]
			rs := cfg.Rules.clone()
			if err := n.Decode(&rs); err != nil {
				errs = append(errs, fmt.Errorf("%s.%s: %w", kind, k, err))
				continue
			}
			errs = append(errs, rs.validate(kind+"."+k)...)
			m[k] = rs
		}
		return m
	}
	cfg.Sites = overlay("sites", shape.Sites)
	cfg.Units = overlay("units", shape.Units)
	if len(shape.Units) > 0 {
		cfg.unitNodes = shape.Units
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return cfg, nil
}

func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// LoadConfig reads and parses a rules file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read rules config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// clone returns a deep copy (the slices are not shared).
func (rs RuleSet) clone() RuleSet {
	c := rs
	c.UPSAlarm.Ignore = append([]string(nil), rs.UPSAlarm.Ignore...)
	c.SelfTestFailed.FailureWords = append([]string(nil), rs.SelfTestFailed.FailureWords...)
	return c
}

// validator collects errors that name the offending key.
type validator struct {
	errs []error
}

func (v *validator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (v *validator) rangeF(path string, x, lo, hi float64) {
	if math.IsNaN(x) || x < lo || x > hi {
		v.fail(path, "must be between %g and %g", lo, hi)
	}
}

func (v *validator) dur(path string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		v.fail(path, "must be between %s and %s", fmtDur(lo), fmtDur(hi))
	}
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	return d.String()
}

func (v *validator) sev(path string, s Severity) {
	if s > Critical {
		v.fail(path, "must be info, warning or critical")
	}
}

const week = 7 * 24 * time.Hour

func (v *validator) common(p string, c Common) {
	v.dur(p+".for", c.For, 0, week)
	v.dur(p+".keep_firing_for", c.KeepFiringFor, 0, week)
	if c.RepeatEvery != 0 {
		v.dur(p+".repeat_every", c.RepeatEvery, time.Minute, 30*24*time.Hour)
	}
}

func (v *validator) simple(p string, c SimpleConfig) {
	v.common(p, c.Common)
	v.sev(p+".severity", c.Severity)
}

// validate checks every rule's configuration (ruleDefs); p prefixes the
// keys named in the errors.
func (rs *RuleSet) validate(p string) []error {
	var v validator
	for i := range ruleDefs {
		ruleDefs[i].validate(&v, p+"."+ruleDefs[i].name, rs)
	}
	return v.errs
}
