package area

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/upswatch/upswatch/ups"
)

// ErrInvalidConfig wraps every configuration error.
var ErrInvalidConfig = errors.New("invalid areas config")

// Config is the areas section of the rules file:
//
//	areas:
//	  min_units: 3          # an area alert needs at least this many units
//	  share: 0.3            # ... and this share of the area's live units
//	  window: 2m            # going on battery (or silent) within this long
//	  resolve_share: 0.8    # resolved once this share of its units is back
//	  resolve_after: 2m     # ... and stayed back this long
//	  update_every: 5m      # units joining later: one update this often at most
//	  sites:
//	    campus:             # a site split into areas by a tag on its units
//	      areas:
//	        building-a: ["123456789012", "123456789013"]
//
// A unit is in the area of its site, or in "site/name" when its site
// lists it under name.
type Config struct {
	MinUnits     int                   `yaml:"min_units"`
	Share        float64               `yaml:"share"`
	Window       time.Duration         `yaml:"window"`
	ResolveShare float64               `yaml:"resolve_share"`
	ResolveAfter time.Duration         `yaml:"resolve_after"`
	UpdateEvery  time.Duration         `yaml:"update_every"`
	Sites        map[string]SiteConfig `yaml:"sites"`

	// tags[serial] is the area name a site gives the unit.
	tags map[ups.Serial]string
}

// SiteConfig tags a site's units with area names.
type SiteConfig struct {
	Areas map[string][]string `yaml:"areas"`
}

// DefaultConfig is the numbers: max(3, 30 %) within 2 minutes,
// resolved at 80 % back for 2 minutes, an update every 5 minutes at most.
func DefaultConfig() Config {
	return Config{MinUnits: 3, Share: 0.3, Window: 2 * time.Minute, ResolveShare: 0.8,
		ResolveAfter: 2 * time.Minute, UpdateEvery: 5 * time.Minute}
}

// ParseConfig decodes the areas node (nil or empty: the defaults) over
// the defaults, rejecting unknown keys, and validates it.
func ParseConfig(n *yaml.Node) (Config, error) {
	c := DefaultConfig()
	if n != nil && n.Kind != 0 {
		type plain Config
		p := plain(c)
		if err := decodeStrict(n, &p); err != nil {
			return Config{}, fmt.Errorf("%w: areas: %w", ErrInvalidConfig, err)
		}
		c = Config(p)
	}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// decodeStrict decodes n into v with unknown keys rejected (yaml.Node.Decode
// has no such option: re-encode and decode with KnownFields).
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

func (c *Config) validate() error {
	var errs []error
	if c.MinUnits < 2 {
		errs = append(errs, errors.New("min_units must be at least 2"))
	}
	if c.Share <= 0 || c.Share > 1 {
		errs = append(errs, errors.New("share must be in (0, 1]"))
	}
	if c.ResolveShare <= 0 || c.ResolveShare > 1 {
		errs = append(errs, errors.New("resolve_share must be in (0, 1]"))
	}
	if c.Window <= 0 {
		errs = append(errs, errors.New("window must be positive"))
	}
	if c.ResolveAfter < 0 || c.UpdateEvery < 0 {
		errs = append(errs, errors.New("resolve_after and update_every must not be negative"))
	}
	c.tags = map[ups.Serial]string{}
	for _, site := range sortedKeys(c.Sites) {
		for _, name := range sortedKeys(c.Sites[site].Areas) {
			if name == "" {
				errs = append(errs, fmt.Errorf("sites.%s.areas: an area needs a name", site))
			}
			for _, s := range c.Sites[site].Areas[name] {
				if !ups.ValidSerial(s) {
					errs = append(errs, fmt.Errorf("sites.%s.areas.%s: %q is not a serial number of 12 or 16 digits", site, name, s))
					continue
				}
				if prev, dup := c.tags[ups.Serial(s)]; dup {
					errs = append(errs, fmt.Errorf("sites.%s.areas.%s: unit %s is already in area %s", site, name, s, prev))
					continue
				}
				c.tags[ups.Serial(s)] = name
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: areas: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// Of returns the area of a unit at site: the site, or "site/name" when the
// site tags the unit; "" (no area) for a unit without a site.
func (c *Config) Of(serial ups.Serial, site string) string {
	if site == "" {
		return ""
	}
	if name, ok := c.tags[serial]; ok && slices.Contains(c.Sites[site].Areas[name], string(serial)) {
		return site + "/" + name
	}
	return site
}

// threshold is how many units make an area alert out of n.
func (c *Config) threshold(n int) int {
	return max(c.MinUnits, int(math.Ceil(c.Share*float64(n)-1e-9)))
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
