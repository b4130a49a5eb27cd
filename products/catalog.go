// Package products is the product catalog and the registration rules:
// which serial numbers belong to which model, whether that model may be
// registered for cloud monitoring, and where it is sold.
//
// The catalog is a YAML file (configs/products.yaml) of entries, each
// matching serials of one length (12 or 16 digits) by prefix or by an
// inclusive numeric range. Entries may not overlap, so a serial matches at
// most one: a recalled batch inside a family is its own entry, with the
// family split around it.
package products

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/upswatch/upswatch/ups"
)

// DefaultPath is the catalog shipped with the service.
const DefaultPath = "configs/products.yaml"

// Everywhere in Regions means the product is sold in every region.
const Everywhere = "*"

// ErrInvalidRegion: Check was given a region that is not an ISO 3166-1
// alpha-2 code. It is the caller's input error, not a registration refusal.
var ErrInvalidRegion = errors.New("products: region must be an ISO 3166-1 alpha-2 code")

// file is the catalog file.
type file struct {
	Products []Entry `yaml:"products"`
}

// Entry is one catalog line, as written in the file.
type Entry struct {
	// Model is the product's name.
	Model string `yaml:"model"`
	// Digits is the serial length, 12 or 16; required with Prefix, implied
	// by Range.
	Digits int `yaml:"digits"`
	// Prefix matches the serials of Digits digits that start with it.
	Prefix string `yaml:"prefix"`
	// Range matches the serials from From to To inclusive (both of the
	// serial's length).
	Range *Range `yaml:"range"`
	// Eligible says whether the serials may be registered (required).
	Eligible *bool `yaml:"eligible"`
	// Regions where the product is sold: ISO 3166-1 alpha-2 codes, or
	// ["*"] for everywhere. Required when eligible.
	Regions []string `yaml:"regions"`
	// Note is free text for the catalog's readers (why a line is
	// ineligible, for example).
	Note string `yaml:"note"`
}

// Range is an inclusive serial range.
type Range struct {
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

// Product is what the catalog says about a serial.
type Product struct {
	Serial   ups.Serial
	Model    string
	Eligible bool
	// Regions as in the catalog: codes, or ["*"].
	Regions []string
}

// SoldIn reports whether the product is sold in region (an upper-case
// ISO 3166-1 alpha-2 code).
func (p Product) SoldIn(region string) bool {
	return slices.Contains(p.Regions, Everywhere) || slices.Contains(p.Regions, region)
}

// span is a validated entry as the interval of serials it covers.
type span struct {
	lo, hi string // same length; for digit strings of one length, string order is numeric order
	name   string // "entry 3 (model "X", line 12)"
	prod   Product
}

// Catalog is a loaded catalog. It is immutable and safe for concurrent use.
type Catalog struct {
	spans map[int][]span // by serial length, sorted by lo
	n     int
}

// Len returns the number of entries.
func (c *Catalog) Len() int { return c.n }

// Load reads and validates a catalog file.
func Load(path string) (*Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("products: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse validates a catalog: unknown keys, malformed entries and
// overlapping entries are errors that name the entry.
func Parse(data []byte) (*Catalog, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("products: the catalog is empty")
		}
		return nil, fmt.Errorf("products: %w", err)
	}
	if len(f.Products) == 0 {
		return nil, errors.New("products: the catalog has no products")
	}
	lines := entryLines(data)
	c := &Catalog{spans: map[int][]span{}, n: len(f.Products)}
	for i, e := range f.Products {
		name := fmt.Sprintf("entry %d (model %q", i+1, e.Model)
		if i < len(lines) {
			name += fmt.Sprintf(", line %d", lines[i])
		}
		name += ")"
		s, err := e.span()
		if err != nil {
			return nil, fmt.Errorf("products: %s: %w", name, err)
		}
		s.name = name
		c.spans[len(s.lo)] = append(c.spans[len(s.lo)], s)
	}
	for _, spans := range c.spans {
		sort.SliceStable(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
		// Sorted by start, any overlap shows between neighbours.
		for i := 1; i < len(spans); i++ {
			if prev, cur := spans[i-1], spans[i]; cur.lo <= prev.hi {
				return nil, fmt.Errorf("products: %s overlaps %s: serials %s to %s match both",
					cur.name, prev.name, cur.lo, min(cur.hi, prev.hi))
			}
		}
	}
	return c, nil
}

// entryLines returns the line of each item of the products sequence, for
// error messages. The strict decode has already checked the shape.
func entryLines(data []byte) []int {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "products" {
			var lines []int
			for _, item := range root.Content[i+1].Content {
				lines = append(lines, item.Line)
			}
			return lines
		}
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// span validates e and returns the serials it covers.
func (e *Entry) span() (span, error) {
	if strings.TrimSpace(e.Model) == "" {
		return span{}, errors.New("model is required")
	}
	if e.Eligible == nil {
		return span{}, errors.New("eligible is required (true or false)")
	}
	var lo, hi string
	switch {
	case e.Prefix != "" && e.Range != nil:
		return span{}, errors.New("give prefix or range, not both")
	case e.Prefix != "":
		if e.Digits != 12 && e.Digits != 16 {
			return span{}, fmt.Errorf("digits must be 12 or 16 with a prefix, got %d", e.Digits)
		}
		if !allDigits(e.Prefix) || len(e.Prefix) > e.Digits {
			return span{}, fmt.Errorf("prefix %q must be 1 to %d digits", e.Prefix, e.Digits)
		}
		pad := e.Digits - len(e.Prefix)
		lo = e.Prefix + strings.Repeat("0", pad)
		hi = e.Prefix + strings.Repeat("9", pad)
	case e.Range != nil:
		from, to := e.Range.From, e.Range.To
		if !ups.ValidSerial(from) || !ups.ValidSerial(to) {
			return span{}, fmt.Errorf("range from %q to %q: both ends must be serials of 12 or 16 digits", from, to)
		}
		if len(from) != len(to) {
			return span{}, fmt.Errorf("range from %q to %q: both ends must have the same number of digits", from, to)
		}
		if e.Digits != 0 && e.Digits != len(from) {
			return span{}, fmt.Errorf("digits is %d but the range has %d-digit serials", e.Digits, len(from))
		}
		if from > to {
			return span{}, fmt.Errorf("range from %q to %q: from is after to", from, to)
		}
		lo, hi = from, to
	default:
		return span{}, errors.New("give a prefix (with digits) or a range")
	}
	if err := validRegions(e.Regions, *e.Eligible); err != nil {
		return span{}, err
	}
	return span{lo: lo, hi: hi, prod: Product{
		Model:    e.Model,
		Eligible: *e.Eligible,
		Regions:  slices.Clone(e.Regions),
	}}, nil
}

func validRegions(rs []string, eligible bool) error {
	if len(rs) == 0 {
		if eligible {
			return errors.New(`regions is required for an eligible product (ISO 3166-1 alpha-2 codes, or ["*"])`)
		}
		return nil
	}
	seen := map[string]bool{}
	for _, r := range rs {
		switch {
		case r == Everywhere:
			if len(rs) != 1 {
				return errors.New(`regions: "*" means everywhere and must be alone`)
			}
		case !ValidRegion(r):
			return fmt.Errorf("regions: %q is not an ISO 3166-1 alpha-2 code (upper case, e.g. VN, US, DE, GB)", r)
		case seen[r]:
			return fmt.Errorf("regions: %q is listed twice", r)
		}
		seen[r] = true
	}
	return nil
}

// Lookup returns the product covering serial, if any. The serial is not
// validated beyond its length.
func (c *Catalog) Lookup(serial string) (Product, bool) {
	spans := c.spans[len(serial)]
	i := sort.Search(len(spans), func(i int) bool { return spans[i].hi >= serial })
	if i == len(spans) || serial < spans[i].lo {
		return Product{}, false
	}
	p := spans[i].prod
	p.Serial = ups.Serial(serial)
	p.Regions = slices.Clone(p.Regions)
	return p, true
}

// Check applies the registration rules to serial for an account in region
// (ISO 3166-1 alpha-2, any case). A refusal is an *Error with its Code:
// CodeInvalidSerial, CodeIneligibleSerial or CodeRegionNotSold; for the
// last two the Product that matched is returned with it. A region that is
// not an ISO code is the caller's error: ErrInvalidRegion.
func (c *Catalog) Check(serial, region string) (Product, error) {
	if !ups.ValidSerial(serial) {
		return Product{}, &Error{Code: CodeInvalidSerial, Detail: fmt.Sprintf("serial has %d characters, want 12 or 16 digits", len(serial))}
	}
	reg := strings.ToUpper(region)
	if !ValidRegion(reg) {
		return Product{}, fmt.Errorf("%w: got %q", ErrInvalidRegion, region)
	}
	p, ok := c.Lookup(serial)
	if !ok {
		return Product{}, &Error{Code: CodeIneligibleSerial, Detail: fmt.Sprintf("serial %s is in no catalog entry", serial)}
	}
	if !p.Eligible {
		return p, &Error{Code: CodeIneligibleSerial, Detail: fmt.Sprintf("serial %s is model %q, which is not eligible", serial, p.Model)}
	}
	if !p.SoldIn(reg) {
		return p, &Error{Code: CodeRegionNotSold, Detail: fmt.Sprintf("model %q of serial %s is not sold in %s", p.Model, serial, reg)}
	}
	return p, nil
}
