package products

import (
	_ "embed"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Registration error codes: stable, for API clients.
const (
	// CodeInvalidSerial: the serial is not exactly 12 or 16 digits.
	CodeInvalidSerial = "invalid_serial"
	// CodeIneligibleSerial: no catalog entry covers the serial, or its
	// product is not eligible.
	CodeIneligibleSerial = "ineligible_serial"
	// CodeRegionNotSold: the product is not sold in the account's region.
	CodeRegionNotSold = "region_not_sold"
	// CodeAlreadyRegistered: the serial belongs to a registration already
	// (the registry decides that, not the catalog).
	CodeAlreadyRegistered = "already_registered"
)

// Codes lists every registration error code.
var Codes = []string{CodeInvalidSerial, CodeIneligibleSerial, CodeRegionNotSold, CodeAlreadyRegistered}

// DefaultLanguage is the fallback for a language without messages.
const DefaultLanguage = "en"

// Error is a registration refusal: a stable Code, a Message for the user
// in their language, and Detail for logs and operators.
type Error struct {
	Code string
	// Detail says why, in English, for logs (for example which catalog
	// entry matched). It names serials and models, no person.
	Detail string
}

// NewError returns an Error with code, for the codes the caller decides
// (CodeAlreadyRegistered).
func NewError(code, detail string) *Error { return &Error{Code: code, Detail: detail} }

func (e *Error) Error() string {
	if e.Detail == "" {
		return "registration refused: " + e.Code
	}
	return "registration refused: " + e.Code + ": " + e.Detail
}

// Is matches another *Error with the same code, so
// errors.Is(err, &products.Error{Code: products.CodeRegionNotSold}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Message returns the user-facing message in lang ("vi", "vi-VN", "en"),
// or in English when lang has none.
func (e *Error) Message(lang string) string { return Message(e.Code, lang) }

//go:embed messages.yaml
var messagesYAML []byte

// messages is language -> code -> text.
var messages = mustMessages(messagesYAML)

func mustMessages(data []byte) map[string]map[string]string {
	m, err := parseMessages(data)
	if err != nil {
		panic(err) // embedded at build time; TestMessagesComplete guards it
	}
	return m
}

func parseMessages(data []byte) (map[string]map[string]string, error) {
	var m map[string]map[string]string
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("products: messages.yaml: %w", err)
	}
	if m[DefaultLanguage] == nil {
		return nil, fmt.Errorf("products: messages.yaml: no %q messages", DefaultLanguage)
	}
	for lang, byCode := range m {
		for _, c := range Codes {
			if strings.TrimSpace(byCode[c]) == "" {
				return nil, fmt.Errorf("products: messages.yaml: %s: no message for %s", lang, c)
			}
		}
		for c := range byCode {
			if !slices.Contains(Codes, c) {
				return nil, fmt.Errorf("products: messages.yaml: %s: unknown code %q", lang, c)
			}
		}
	}
	return m, nil
}

// Languages lists the languages with messages, sorted.
func Languages() []string { return slices.Sorted(maps.Keys(messages)) }

// Message returns the message for code in lang: the base language of a tag
// ("vi" of "vi-VN" or "vi_VN"), case-insensitive, falling back to English.
// An unknown code gives the code itself.
func Message(code, lang string) string {
	base := strings.ToLower(lang)
	if i := strings.IndexAny(base, "-_"); i >= 0 {
		base = base[:i]
	}
	if m, ok := messages[base][code]; ok {
		return m
	}
	if m, ok := messages[DefaultLanguage][code]; ok {
		return m
	}
	return code
}
