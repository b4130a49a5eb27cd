// Package templates renders alert notifications in the recipient's
// language from YAML files: en.yaml and vi.yaml are built in (go:embed),
// and a directory (notify.templates_dir) may override them rule by rule or
// add languages.
//
// Every template is executed once with sample data at load, so a typo
// fails the start, not the first outage.
package templates

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/upswatch/upswatch/notify/sms"
	"github.com/upswatch/upswatch/rules"
)

//go:embed *.yaml
var builtin embed.FS

// DefaultLanguage is used when the recipient's language has no templates.
const DefaultLanguage = "en"

// Data is what a template sees.
type Data struct {
	// Name is the unit's name, or its serial when unnamed.
	Name     string
	Serial   string
	Site     string
	Rule     string
	Severity string
	Kind     string
	// At is the event time in the recipient's time zone; Time is it as
	// "15:04" (with the date when not today there).
	At   time.Time
	Time string
	// Duration is the alert's length on resolved events.
	Duration time.Duration
	// Values by name (battery.runtime, battery.charge, ups.load...), and
	// the common ones rounded for text.
	Values         map[string]float64
	RuntimeMinutes int
	Charge         int
	Load           int
	InputVoltage   int
	Temperature    int
	Interruptions  int
	// Message is the engine's English summary.
	Message string
	// Units and Affected are an area alert's (site_outage,
	// site_unreachable): how many units it covers, and how many are still
	// affected; Since is when it began, formatted like Time.
	Units    int
	Affected int
	Since    string
}

// NewData fills Data from an event, for a unit named name (empty: the
// serial) at site, seen from loc at now.
func NewData(ev *rules.Event, name, site string, loc *time.Location, now time.Time) Data {
	if name == "" {
		name = string(ev.Serial)
	}
	if loc == nil {
		loc = time.UTC
	}
	clockOf := func(t time.Time) string {
		t = t.In(loc)
		if y, m, d := now.In(loc).Date(); t.Year() != y || t.Month() != m || t.Day() != d {
			return t.Format("02/01 15:04")
		}
		return t.Format("15:04")
	}
	at := ev.At.In(loc)
	clock := clockOf(ev.At)
	d := Data{Name: name, Serial: string(ev.Serial), Site: site, Rule: ev.Rule, Severity: ev.Severity.String(),
		Kind: ev.Kind.String(), At: at, Time: clock, Duration: ev.Duration, Message: ev.Message,
		Values: make(map[string]float64, len(ev.Values))}
	for _, v := range ev.Values {
		d.Values[v.Name] = v.Value
	}
	round := func(name string) int { return int(math.Round(d.Values[name])) }
	d.Units, d.Affected, d.Since = round("area.units"), round("area.units_affected"), clockOf(ev.StartedAt)
	if s, ok := d.Values["battery.runtime"]; ok {
		d.RuntimeMinutes = int(s / 60)
	}
	d.Charge, d.Load, d.InputVoltage = round("battery.charge"), round("ups.load"), round("input.voltage")
	d.Temperature, d.Interruptions = round("ups.temperature"), round("power.interruptions")
	return d
}

// Text is a rendered notification.
type Text struct {
	Title string
	Body  string
	// SMS is the text message, already passed through sms.FitGSM.
	SMS string
}

// file is the YAML form of one language.
type file struct {
	DurationUnits *struct {
		Hour   string `yaml:"hour"`
		Minute string `yaml:"minute"`
		Second string `yaml:"second"`
	} `yaml:"duration_units"`
	// DecimalSeparator is how the language writes 99.2 ("." when unset).
	DecimalSeparator string                       `yaml:"decimal_separator"`
	Test             *entry                       `yaml:"test"`
	Weekly           *entry                       `yaml:"weekly"`
	Rules            map[string]map[string]*entry `yaml:"rules"`
}

type entry struct {
	Title string `yaml:"title"`
	Body  string `yaml:"body"`
	SMS   string `yaml:"sms"`
}

type compiled struct{ title, body, sms *template.Template }

type language struct {
	units   [3]string // hour, minute, second
	decimal string
	test    *compiled
	weekly  *compiled // nil: the default language's
	rules   map[string]map[string]*compiled
}

// Set holds every language's templates. It is safe for concurrent use.
type Set struct {
	langs map[string]*language
}

// Load reads the built-in templates and, when dir is not empty, the
// overrides in dir/<lang>.yaml.
func Load(dir string) (*Set, error) {
	raw := map[string]*file{}
	if err := readAll(builtin, ".", raw); err != nil {
		return nil, fmt.Errorf("built-in templates: %w", err)
	}
	if dir != "" {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("templates dir: %w", err)
		}
		if err := readAll(os.DirFS(dir), ".", raw); err != nil {
			return nil, fmt.Errorf("templates dir %s: %w", dir, err)
		}
	}
	s := &Set{langs: map[string]*language{}}
	var errs []error
	for lang, f := range raw {
		l, err := compile(lang, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.langs[lang] = l
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if s.langs[DefaultLanguage] == nil {
		return nil, fmt.Errorf("templates: no %s.yaml", DefaultLanguage)
	}
	return s, nil
}

// readAll merges every <lang>.yaml of fsys into raw, entry by entry.
func readAll(fsys fs.FS, dir string, raw map[string]*file) error {
	names, err := fs.Glob(fsys, filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		var f file
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		lang := strings.TrimSuffix(filepath.Base(name), ".yaml")
		base := raw[lang]
		if base == nil {
			raw[lang] = &f
			continue
		}
		if f.DurationUnits != nil {
			base.DurationUnits = f.DurationUnits
		}
		if f.Test != nil {
			base.Test = f.Test
		}
		if f.Weekly != nil {
			base.Weekly = f.Weekly
		}
		if f.DecimalSeparator != "" {
			base.DecimalSeparator = f.DecimalSeparator
		}
		for rule, kinds := range f.Rules {
			if base.Rules[rule] == nil {
				base.Rules[rule] = map[string]*entry{}
			}
			maps.Copy(base.Rules[rule], kinds)
		}
	}
	return nil
}

var sample = rules.Event{Kind: rules.Resolved, Rule: "on_battery", Severity: rules.Critical, Serial: "123456789012",
	At: time.Date(2025, 11, 24, 16, 10, 0, 0, time.UTC), Duration: 10 * time.Minute,
	Values: []rules.Value{{Name: "battery.runtime", Value: 1200}, {Name: "battery.charge", Value: 80}}, Message: "sample"}

func compile(lang string, f *file) (*language, error) {
	l := &language{units: [3]string{"h", "min", "s"}, decimal: ".", rules: map[string]map[string]*compiled{}}
	if u := f.DurationUnits; u != nil {
		l.units = [3]string{u.Hour, u.Minute, u.Second}
	}
	if f.DecimalSeparator != "" {
		l.decimal = f.DecimalSeparator
	}
	// percent turns a fraction (a battery's state of health, 0.78) into
	// the percentage people read (78); decimal writes a number with one
	// decimal the language's way (99.2, 99,2).
	funcs := template.FuncMap{"duration": l.duration, "percent": func(x float64) float64 { return x * 100 },
		"decimal": l.formatDecimal}
	ruleData := NewData(&sample, "Office", "hq", time.UTC, sample.At)
	one := func(where string, e *entry, data any) (*compiled, error) {
		if e == nil || e.Title == "" || e.Body == "" {
			return nil, fmt.Errorf("templates %s.yaml: %s: title and body are required", lang, where)
		}
		c := &compiled{}
		for _, p := range []struct {
			dst **template.Template
			src string
		}{{&c.title, e.Title}, {&c.body, e.Body}, {&c.sms, e.SMS}} {
			if p.src == "" {
				continue
			}
			t, err := template.New(where).Funcs(funcs).Option("missingkey=error").Parse(p.src)
			if err != nil {
				return nil, fmt.Errorf("templates %s.yaml: %w", lang, err)
			}
			if err := t.Execute(&bytes.Buffer{}, data); err != nil {
				return nil, fmt.Errorf("templates %s.yaml: %w", lang, err)
			}
			*p.dst = t
		}
		return c, nil
	}
	var err error
	if l.test, err = one("test", f.Test, ruleData); err != nil {
		return nil, err
	}
	if f.Weekly != nil {
		// Executed with a busy week and an empty one: both branches of
		// a template's conditions run at load.
		for _, d := range []WeeklyData{sampleWeek, {From: "02/03", To: "08/03", Units: 1}} {
			if l.weekly, err = one("weekly", f.Weekly, d); err != nil {
				return nil, err
			}
		}
	}
	for rule, kinds := range f.Rules {
		l.rules[rule] = map[string]*compiled{}
		for kind, e := range kinds {
			if !slices.Contains([]string{"firing", "resolved", "reminder", "updated"}, kind) {
				return nil, fmt.Errorf("templates %s.yaml: rules.%s: unknown kind %q (firing, resolved, reminder, updated)", lang, rule, kind)
			}
			if l.rules[rule][kind], err = one("rules."+rule+"."+kind, e, ruleData); err != nil {
				return nil, err
			}
		}
	}
	if l.rules["default"]["firing"] == nil || l.rules["default"]["resolved"] == nil {
		return nil, fmt.Errorf("templates %s.yaml: rules.default needs firing and resolved", lang)
	}
	if lang == DefaultLanguage && l.weekly == nil {
		return nil, fmt.Errorf("templates %s.yaml: weekly is required (other languages fall back to it)", lang)
	}
	return l, nil
}

// formatDecimal writes x with one decimal and the language's separator.
func (l *language) formatDecimal(x float64) string {
	return strings.Replace(strconv.FormatFloat(x, 'f', 1, 64), ".", l.decimal, 1)
}

// duration renders d as "1 h 5 min" or "4 min 12 s".
func (l *language) duration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	var parts []string
	if h > 0 {
		parts = append(parts, strconv.Itoa(h)+" "+l.units[0])
	}
	if m > 0 {
		parts = append(parts, strconv.Itoa(m)+" "+l.units[1])
	}
	if h == 0 && (s > 0 || m == 0) {
		parts = append(parts, strconv.Itoa(s)+" "+l.units[2])
	}
	return strings.Join(parts, " ")
}

// Languages lists the languages loaded.
func (s *Set) Languages() []string { return slices.Sorted(maps.Keys(s.langs)) }

func (s *Set) lang(name string) *language {
	if l := s.langs[name]; l != nil {
		return l
	}
	return s.langs[DefaultLanguage]
}

// Render renders the notification of d in lang (DefaultLanguage when not
// loaded). Reminder and updated fall back to the rule's firing text; a rule
// without texts uses "default".
func (s *Set) Render(lang string, d Data) (Text, error) {
	l := s.lang(lang)
	kind := d.Kind
	if kind == "reminder" || kind == "updated" {
		kind = "firing"
	}
	c := l.rules[d.Rule][d.Kind]
	if c == nil {
		c = l.rules[d.Rule][kind]
	}
	if c == nil {
		c = l.rules["default"][kind]
	}
	if c == nil {
		return Text{}, fmt.Errorf("templates: no text for %s %s", d.Rule, d.Kind)
	}
	return c.render(d)
}

// WeeklyData is what the weekly summary's template sees: an account's
// fleet over the week from Monday 00:00 to Monday 00:00 in its zone.
type WeeklyData struct {
	// From and To are the week's first and last days ("02/03", "08/03").
	From, To string
	// Units is how many units the fleet has.
	Units int
	// Outages is how many on-battery periods there were; OnBattery their
	// total length and Longest the longest, at LongestAt (the unit's name,
	// with its site in parentheses when it has one).
	Outages   int
	OnBattery time.Duration
	Longest   time.Duration
	LongestAt string
	// HasMains: some unit reported its input voltage; MainsInBand is then
	// the share of 10-minute means within nominal ±10 %, in percent.
	HasMains    bool
	MainsInBand float64
}

var sampleWeek = WeeklyData{From: "02/03", To: "08/03", Units: 4, Outages: 3, OnBattery: 47 * time.Minute,
	Longest: 31 * time.Minute, LongestAt: "Office (hq)", HasMains: true, MainsInBand: 99.2}

// Weekly renders the weekly summary in lang (the default language's text
// when lang has none).
func (s *Set) Weekly(lang string, d WeeklyData) (Text, error) {
	c := s.lang(lang).weekly
	if c == nil {
		c = s.langs[DefaultLanguage].weekly
	}
	return c.render(d)
}

// Test renders the test notification in lang.
func (s *Set) Test(lang string) (Text, error) {
	return s.lang(lang).test.render(NewData(&rules.Event{Rule: "test", At: time.Now()}, "upswatch", "", time.UTC, time.Now()))
}

func (c *compiled) render(d any) (Text, error) {
	exec := func(t *template.Template) (string, error) {
		var b strings.Builder
		if err := t.Execute(&b, d); err != nil {
			return "", fmt.Errorf("templates: %w", err)
		}
		return strings.TrimSpace(b.String()), nil
	}
	var t Text
	var err error
	if t.Title, err = exec(c.title); err != nil {
		return Text{}, err
	}
	if t.Body, err = exec(c.body); err != nil {
		return Text{}, err
	}
	text := t.Title + " " + t.Body
	if c.sms != nil {
		if text, err = exec(c.sms); err != nil {
			return Text{}, err
		}
	}
	t.SMS = sms.FitGSM(strings.TrimSpace(strings.Join(strings.Fields(stripSymbols(text)), " ")))
	return t, nil
}

// stripSymbols removes emoji and other pictographs, which GSM-7 would show
// as "?".
func stripSymbols(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.Is(unicode.So, r) || unicode.Is(unicode.Sk, r) || r == '\ufe0f' || r == '\u3030' || r == '\u200d' {
			return -1
		}
		return r
	}, s)
}
