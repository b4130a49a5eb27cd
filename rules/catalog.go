package rules

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// Catalog is a parsed, validated rules configuration with the effective
// rule set of every site and unit precomputed, so the evaluator never
// merges configuration on the hot path. It is immutable.
type Catalog struct {
	cfg   Config
	def   *params
	sites map[string]*params
	// units[serial][site] is the unit's override laid over that site's
	// rules; units[serial][""] over the global rules (a unit whose site
	// has no override).
	units map[string]map[string]*params
}

// params is one effective rule set in the form the evaluator uses.
type params struct {
	RuleSet
	historicalAfter int64 // ms
	failureWords    []string
	// failureFirst marks the first bytes (both cases) of failureWords,
	// so the test result is scanned once rather than once per word.
	failureFirst [256]bool
	// timing holds each rule's timing, read from RuleSet once here
	// rather than through ruleDefs[id].timing on every reading.
	timing [numRules]Common
}

func compile(rs RuleSet, historicalAfter time.Duration) *params {
	p := &params{RuleSet: rs, historicalAfter: historicalAfter.Milliseconds()}
	for _, w := range rs.SelfTestFailed.FailureWords {
		w = strings.ToLower(strings.TrimSpace(w))
		p.failureWords = append(p.failureWords, w)
		p.failureFirst[w[0]] = true
		p.failureFirst[strings.ToUpper(w[:1])[0]] = true
	}
	for id := range numRules {
		p.timing[id] = ruleDefs[id].timing(&p.RuleSet)
	}
	return p
}

// NewCatalog builds a catalog from a parsed configuration.
func NewCatalog(cfg Config) (*Catalog, error) {
	errs := cfg.Rules.validate("rules")
	for _, k := range sortedKeys(cfg.Sites) {
		rs := cfg.Sites[k]
		errs = append(errs, rs.validate("sites."+k)...)
	}
	for _, k := range sortedKeys(cfg.Units) {
		rs := cfg.Units[k]
		errs = append(errs, rs.validate("units."+k)...)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, joinErrs(errs))
	}
	c := &Catalog{cfg: cfg, def: compile(cfg.Rules, cfg.HistoricalAfter)}
	if len(cfg.Sites) > 0 {
		c.sites = make(map[string]*params, len(cfg.Sites))
		for k, rs := range cfg.Sites {
			c.sites[k] = compile(rs, cfg.HistoricalAfter)
		}
	}
	if len(cfg.Units) > 0 {
		c.units = make(map[string]map[string]*params, len(cfg.Units))
		for serial, rs := range cfg.Units {
			m := map[string]*params{"": compile(rs, cfg.HistoricalAfter)}
			for _, site := range sortedKeys(cfg.Sites) {
				urs, err := cfg.unitOnSite(serial, site)
				if err == nil {
					if verrs := urs.validate("units." + serial + " over sites." + site); len(verrs) > 0 {
						err = joinErrs(verrs)
					}
				}
				if err != nil {
					return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
				}
				m[site] = compile(urs, cfg.HistoricalAfter)
			}
			c.units[serial] = m
		}
	}
	return c, nil
}

// joinErrs joins validation errors on one line each.
func joinErrs(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// ParseCatalog parses and validates the YAML of a rules file.
func ParseCatalog(data []byte) (*Catalog, error) {
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, err
	}
	return NewCatalog(cfg)
}

// LoadCatalog reads, parses and validates a rules file.
func LoadCatalog(path string) (*Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read rules config: %w", err)
	}
	c, err := ParseCatalog(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// DefaultCatalog returns the built-in catalog (what configs/rules.yaml
// holds).
func DefaultCatalog() *Catalog {
	c, err := NewCatalog(DefaultConfig())
	if err != nil {
		panic("rules: built-in defaults do not validate: " + err.Error())
	}
	return c
}

// Config returns the configuration the catalog was built from.
func (c *Catalog) Config() Config { return c.cfg }

// Rules returns the effective rule set for a unit of a site ("" = none).
func (c *Catalog) Rules(site string, serial ups.Serial) RuleSet {
	return c.params(site, serial).RuleSet
}

func (c *Catalog) params(site string, serial ups.Serial) *params {
	if c.units != nil {
		if m, ok := c.units[string(serial)]; ok {
			if p, ok := m[site]; ok {
				return p
			}
			return m[""]
		}
	}
	if c.sites != nil {
		if p, ok := c.sites[site]; ok {
			return p
		}
	}
	return c.def
}
