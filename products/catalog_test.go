package products

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testCatalog covers prefix and range entries of both lengths, an
// ineligible range inside a family, and a VN-only product.
const testCatalog = `
products:
  - model: P12
    digits: 12
    prefix: "1234"
    eligible: true
    regions: ["*"]
  - model: R12
    range: {from: "500000000000", to: "500000000099"}
    eligible: true
    regions: [US, DE]
  - model: Recalled
    range: {from: "500000000100", to: "500000000199"}
    eligible: false
  - model: VNOnly
    digits: 12
    prefix: "777"
    eligible: true
    regions: [VN]
  - model: P16
    digits: 16
    prefix: "1234"
    eligible: true
    regions: [VN, US]
  - model: Single
    digits: 16
    prefix: "9999999999999999"
    eligible: true
    regions: ["*"]
`

func mustParse(t *testing.T, s string) *Catalog {
	t.Helper()
	c, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const (
	enInvalid    = "This serial number is not valid: a serial number has exactly 12 or 16 digits."
	viInvalid    = "Số sê-ri không hợp lệ: số sê-ri gồm đúng 12 hoặc 16 chữ số."
	enIneligible = "This serial number is not eligible for cloud monitoring: check that it matches the number on the product box."
	viIneligible = "Số sê-ri này không đủ điều kiện để giám sát qua đám mây: vui lòng kiểm tra xem số sê-ri có khớp với số trên hộp sản phẩm không."
	enRegion     = "This product is not sold in your region: please check with your local dealer."
	viRegion     = "Sản phẩm này không được bán tại khu vực của bạn: vui lòng liên hệ đại lý tại địa phương."
	enAlready    = "This serial number is already registered: if the unit is yours, please contact support."
	viAlready    = "Số sê-ri này đã được đăng ký: nếu thiết bị là của bạn, vui lòng liên hệ bộ phận hỗ trợ."
)

// TestCheckErrors is every registration error path, in both languages.
func TestCheckErrors(t *testing.T) {
	c := mustParse(t, testCatalog)
	cases := []struct {
		name, serial, region, code, model string
		en, vi                            string
	}{
		{"empty", "", "VN", CodeInvalidSerial, "", enInvalid, viInvalid},
		{"11 digits", "12345678901", "VN", CodeInvalidSerial, "", enInvalid, viInvalid},
		{"13 digits", "1234567890123", "VN", CodeInvalidSerial, "", enInvalid, viInvalid},
		{"17 digits", "12345678901234567", "VN", CodeInvalidSerial, "", enInvalid, viInvalid},
		{"letter", "12345678901A", "VN", CodeInvalidSerial, "", enInvalid, viInvalid},
		{"spaces", "1234 5678 9012", "VN", CodeInvalidSerial, "", enInvalid, viInvalid},
		{"dash", "1234-5678-9012", "VN", CodeInvalidSerial, "", enInvalid, viInvalid},
		{"leading space", " 123456789012", "VN", CodeInvalidSerial, "", enInvalid, viInvalid},
		{"non-ASCII digits", "١٢٣٤٥٦٧٨٩٠١٢", "VN", CodeInvalidSerial, "", enInvalid, viInvalid},
		{"no entry 12", "999999999999", "VN", CodeIneligibleSerial, "", enIneligible, viIneligible},
		{"no entry 16", "5000000000000000", "VN", CodeIneligibleSerial, "", enIneligible, viIneligible},
		{"12-digit prefix does not match 16", "1235000000000000", "VN", CodeIneligibleSerial, "", enIneligible, viIneligible},
		{"just past a range", "500000000200", "US", CodeIneligibleSerial, "", enIneligible, viIneligible},
		{"recalled batch, first", "500000000100", "US", CodeIneligibleSerial, "Recalled", enIneligible, viIneligible},
		{"recalled batch, last", "500000000199", "US", CodeIneligibleSerial, "Recalled", enIneligible, viIneligible},
		{"range, wrong region", "500000000050", "VN", CodeRegionNotSold, "R12", enRegion, viRegion},
		{"VN only, from US", "777000000001", "US", CodeRegionNotSold, "VNOnly", enRegion, viRegion},
		{"16 digits, wrong region", "1234000000000001", "DE", CodeRegionNotSold, "P16", enRegion, viRegion},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := c.Check(tc.serial, tc.region)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Check(%q, %q) = %+v, %v; want *Error %s", tc.serial, tc.region, p, err, tc.code)
			}
			if e.Code != tc.code {
				t.Fatalf("code = %s, want %s (%v)", e.Code, tc.code, err)
			}
			if !errors.Is(err, &Error{Code: tc.code}) {
				t.Fatalf("errors.Is by code failed for %v", err)
			}
			if p.Model != tc.model {
				t.Fatalf("product with the error = %q, want %q", p.Model, tc.model)
			}
			for lang, want := range map[string]string{"en": tc.en, "vi": tc.vi, "vi-VN": tc.vi, "VI_vn": tc.vi, "en-US": tc.en, "fr": tc.en, "": tc.en} {
				if got := e.Message(lang); got != want {
					t.Errorf("Message(%q) = %q, want %q", lang, got, want)
				}
			}
		})
	}
}

func TestAlreadyRegistered(t *testing.T) {
	var err error = NewError(CodeAlreadyRegistered, "serial 123456789012 is registered to another account")
	var e *Error
	if !errors.As(err, &e) || e.Code != "already_registered" {
		t.Fatalf("got %v", err)
	}
	if got := e.Message("en"); got != enAlready {
		t.Errorf("en: %q", got)
	}
	if got := e.Message("vi"); got != viAlready {
		t.Errorf("vi: %q", got)
	}
	if got := e.Message("de"); got != enAlready {
		t.Errorf("unknown language: %q", got)
	}
	if !strings.Contains(err.Error(), "already_registered") {
		t.Errorf("Error() = %q does not carry the code", err)
	}
	if errors.Is(err, &Error{Code: CodeRegionNotSold}) {
		t.Error("errors.Is matched another code")
	}
}

func TestCheckAccepts(t *testing.T) {
	c := mustParse(t, testCatalog)
	cases := []struct{ serial, region, model string }{
		{"123400000000", "VN", "P12"}, // prefix, first
		{"123499999999", "us", "P12"}, // prefix, last; region in lower case
		{"500000000000", "US", "R12"}, // range, first
		{"500000000099", "DE", "R12"}, // range, last
		{"777123456789", "VN", "VNOnly"},
		{"1234000000000000", "VN", "P16"}, // same prefix, other length
		{"1234999999999999", "US", "P16"},
		{"9999999999999999", "GB", "Single"}, // a full-length prefix
	}
	for _, tc := range cases {
		p, err := c.Check(tc.serial, tc.region)
		if err != nil {
			t.Errorf("Check(%s, %s): %v", tc.serial, tc.region, err)
			continue
		}
		if p.Model != tc.model || string(p.Serial) != tc.serial || !p.Eligible {
			t.Errorf("Check(%s, %s) = %+v, want model %s", tc.serial, tc.region, p, tc.model)
		}
	}
	// Lookup's result is a copy: changing it does not change the catalog.
	p, _ := c.Lookup("777123456789")
	p.Regions[0] = "US"
	if _, err := c.Check("777123456789", "US"); err == nil {
		t.Fatal("the catalog changed through a returned product")
	}
}

func TestCheckInvalidRegion(t *testing.T) {
	c := mustParse(t, testCatalog)
	for _, r := range []string{"", "UK", "VNM", "*", "EU", "1A"} {
		_, err := c.Check("123400000000", r)
		if !errors.Is(err, ErrInvalidRegion) {
			t.Errorf("region %q: %v, want ErrInvalidRegion", r, err)
		}
		var e *Error
		if errors.As(err, &e) {
			t.Errorf("region %q: a caller's error came as a refusal %s", r, e.Code)
		}
	}
}

func TestParseErrors(t *testing.T) {
	entry := func(body string) string { return "products:\n  - model: A\n" + body }
	cases := []struct{ name, yaml, want string }{
		{"empty", "", "the catalog is empty"},
		{"no products", "products: []\n", "the catalog has no products"},
		{"unknown top key", "vendor: x\nproducts:\n  - model: A\n", "field vendor not found"},
		{"unknown entry key", entry("    digits: 12\n    prefix: \"1\"\n    eligible: true\n    region: [VN]\n"), "line 6: field region not found"},
		{"no model", "products:\n  - digits: 12\n    prefix: \"1\"\n    eligible: true\n    regions: [VN]\n", `entry 1 (model "", line 2): model is required`},
		{"no eligible", entry("    digits: 12\n    prefix: \"1\"\n    regions: [VN]\n"), `entry 1 (model "A", line 2): eligible is required`},
		{"no matcher", entry("    eligible: true\n    regions: [VN]\n"), "give a prefix (with digits) or a range"},
		{"both", entry("    digits: 12\n    prefix: \"1\"\n    range: {from: \"100000000000\", to: \"100000000001\"}\n    eligible: true\n    regions: [VN]\n"), "give prefix or range, not both"},
		{"prefix without digits", entry("    prefix: \"1\"\n    eligible: true\n    regions: [VN]\n"), "digits must be 12 or 16 with a prefix, got 0"},
		{"digits 13", entry("    digits: 13\n    prefix: \"1\"\n    eligible: true\n    regions: [VN]\n"), "digits must be 12 or 16 with a prefix, got 13"},
		{"prefix not digits", entry("    digits: 12\n    prefix: \"12a\"\n    eligible: true\n    regions: [VN]\n"), `prefix "12a" must be 1 to 12 digits`},
		{"prefix too long", entry("    digits: 12\n    prefix: \"1234567890123\"\n    eligible: true\n    regions: [VN]\n"), `prefix "1234567890123" must be 1 to 12 digits`},
		{"range short", entry("    range: {from: \"1\", to: \"100000000001\"}\n    eligible: true\n    regions: [VN]\n"), "both ends must be serials of 12 or 16 digits"},
		{"range lengths", entry("    range: {from: \"100000000000\", to: \"1000000000000000\"}\n    eligible: true\n    regions: [VN]\n"), "same number of digits"},
		{"range backwards", entry("    range: {from: \"100000000002\", to: \"100000000001\"}\n    eligible: true\n    regions: [VN]\n"), "from is after to"},
		{"range digits disagree", entry("    digits: 16\n    range: {from: \"100000000000\", to: \"100000000001\"}\n    eligible: true\n    regions: [VN]\n"), "digits is 16 but the range has 12-digit serials"},
		{"no regions", entry("    digits: 12\n    prefix: \"1\"\n    eligible: true\n"), "regions is required for an eligible product"},
		{"bad region", entry("    digits: 12\n    prefix: \"1\"\n    eligible: true\n    regions: [VN, UK]\n"), `regions: "UK" is not an ISO 3166-1 alpha-2 code`},
		{"lower-case region", entry("    digits: 12\n    prefix: \"1\"\n    eligible: true\n    regions: [vn]\n"), `regions: "vn" is not an ISO 3166-1 alpha-2 code`},
		{"star not alone", entry("    digits: 12\n    prefix: \"1\"\n    eligible: true\n    regions: [VN, \"*\"]\n"), `"*" means everywhere and must be alone`},
		{"duplicate region", entry("    digits: 12\n    prefix: \"1\"\n    eligible: true\n    regions: [VN, VN]\n"), `"VN" is listed twice`},
		{"eligible not bool", entry("    digits: 12\n    prefix: \"1\"\n    eligible: maybe\n    regions: [VN]\n"), "cannot unmarshal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestOverlapsRejected(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"prefix in prefix", `
products:
  - {model: Wide, digits: 12, prefix: "12", eligible: true, regions: ["*"]}
  - {model: Narrow, digits: 12, prefix: "123", eligible: false}
`, `entry 2 (model "Narrow", line 4) overlaps entry 1 (model "Wide", line 3): serials 123000000000 to 123999999999 match both`},
		{"range in prefix", `
products:
  - {model: Range, range: {from: "123400000005", to: "123400000010"}, eligible: false}
  - {model: Prefix, digits: 12, prefix: "1234", eligible: true, regions: [VN]}
`, `entry 1 (model "Range", line 3) overlaps entry 2 (model "Prefix", line 4): serials 123400000005 to 123400000010 match both`},
		{"ranges sharing an end", `
products:
  - {model: A, range: {from: "100000000000", to: "100000000010"}, eligible: true, regions: ["*"]}
  - {model: B, range: {from: "100000000010", to: "100000000020"}, eligible: true, regions: ["*"]}
`, `entry 2 (model "B", line 4) overlaps entry 1 (model "A", line 3): serials 100000000010 to 100000000010 match both`},
		{"far apart in the file", `
products:
  - {model: A, range: {from: "1000000000000000", to: "1999999999999999"}, eligible: true, regions: ["*"]}
  - {model: B, digits: 16, prefix: "3", eligible: true, regions: ["*"]}
  - {model: C, digits: 16, prefix: "2", eligible: true, regions: ["*"]}
  - {model: D, digits: 16, prefix: "15", eligible: true, regions: ["*"]}
`, `entry 4 (model "D", line 6) overlaps entry 1 (model "A", line 3)`},
		{"same entry twice", `
products:
  - {model: A, digits: 16, prefix: "42", eligible: true, regions: ["*"]}
  - {model: A, digits: 16, prefix: "42", eligible: true, regions: ["*"]}
`, `entry 2 (model "A", line 4) overlaps entry 1 (model "A", line 3)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
	// Adjacent, not overlapping; and equal prefixes of different lengths.
	mustParse(t, `
products:
  - {model: A, range: {from: "100000000000", to: "100000000010"}, eligible: true, regions: ["*"]}
  - {model: B, range: {from: "100000000011", to: "100000000020"}, eligible: true, regions: ["*"]}
  - {model: C, digits: 12, prefix: "2", eligible: true, regions: ["*"]}
  - {model: D, digits: 16, prefix: "2", eligible: true, regions: ["*"]}
`)
}

// TestShippedCatalog loads configs/products.yaml and checks known serials.
func TestShippedCatalog(t *testing.T) {
	c, err := Load(filepath.Join("..", DefaultPath))
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() < 5 {
		t.Fatalf("shipped catalog has %d entries", c.Len())
	}
	cases := []struct{ serial, region, model, code string }{
		{"106500000001", "DE", "Lumora Home 650", ""},
		{"110012345678", "VN", "Lumora Home 1000", ""},
		{"108000000042", "VN", "Lumora Saigon 800", ""},
		{"108000000042", "US", "Lumora Saigon 800", CodeRegionNotSold},
		{"050012345678", "VN", "Lumora Classic 500", CodeIneligibleSerial},
		{"120400000000", "TH", "Lumora Office 1500", ""},
		{"120505555555", "VN", "Lumora Office 1500", CodeIneligibleSerial}, // recalled batch
		{"120600000000", "DE", "Lumora Office 1500", CodeRegionNotSold},
		{"3000123412341234", "US", "Lumora Rack 3000", ""},
		{"3000123412341234", "VN", "Lumora Rack 3000", CodeRegionNotSold},
		{"6000001234567890", "BR", "Lumora Rack 6000", ""},
		{"7010000000000001", "JP", "Lumora Industrial 10k", ""},
		{"200000000000", "VN", "", CodeIneligibleSerial},
		{"30001234123", "US", "", CodeInvalidSerial},
	}
	for _, tc := range cases {
		p, err := c.Check(tc.serial, tc.region)
		var e *Error
		switch {
		case tc.code == "" && err != nil:
			t.Errorf("Check(%s, %s): %v", tc.serial, tc.region, err)
		case tc.code != "" && (!errors.As(err, &e) || e.Code != tc.code):
			t.Errorf("Check(%s, %s) = %v, want %s", tc.serial, tc.region, err, tc.code)
		case p.Model != tc.model:
			t.Errorf("Check(%s, %s) model = %q, want %q", tc.serial, tc.region, p.Model, tc.model)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "products.yaml")
	if err := os.WriteFile(path, []byte("products:\n  - model: A\n    colour: red\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+": ") || !strings.Contains(err.Error(), "field colour not found") {
		t.Fatalf("err = %v, want the path and the unknown key", err)
	}
}

func TestMessagesComplete(t *testing.T) {
	if got := Languages(); !slices.Equal(got, []string{"en", "vi"}) {
		t.Fatalf("Languages = %v", got)
	}
	for _, lang := range Languages() {
		for _, code := range Codes {
			if m := Message(code, lang); m == code || m == "" {
				t.Errorf("%s/%s has no message", lang, code)
			}
		}
	}
	if Message("no_such_code", "vi") != "no_such_code" {
		t.Error("unknown code should give the code")
	}
	for _, bad := range []string{
		"vi:\n  invalid_serial: x\n", // no en
		"en:\n  invalid_serial: a\n  ineligible_serial: b\n  region_not_sold: c\n",                                     // missing code
		"en:\n  invalid_serial: a\n  ineligible_serial: b\n  region_not_sold: c\n  already_registered: d\n  typo: e\n", // unknown code
	} {
		if _, err := parseMessages([]byte(bad)); err == nil {
			t.Errorf("parseMessages accepted %q", bad)
		}
	}
}

func TestRegions(t *testing.T) {
	if n := len(regions); n != 249 {
		t.Fatalf("%d ISO 3166-1 alpha-2 codes, want 249", n)
	}
	for _, ok := range []string{"VN", "US", "DE", "GB", "JP", "SS", "BQ"} {
		if !ValidRegion(ok) {
			t.Errorf("%s rejected", ok)
		}
	}
	for _, bad := range []string{"UK", "EU", "vn", "", "VNM", "XK"} {
		if ValidRegion(bad) {
			t.Errorf("%s accepted", bad)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	c, err := Load(filepath.Join("..", DefaultPath))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Check("120400000000", "VN"); err != nil {
			b.Fatal(err)
		}
	}
}
