package web

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed i18n/*.yaml
var i18nFS embed.FS

// catalog maps a language to its texts.
type catalog map[string]map[string]string

// Languages the console speaks, the first the fallback.
var Languages = []string{"en", "vi"}

func loadCatalog(fsys fs.FS) (catalog, error) {
	c := catalog{}
	for _, lang := range Languages {
		b, err := fs.ReadFile(fsys, path.Join("i18n", lang+".yaml"))
		if err != nil {
			return nil, fmt.Errorf("console texts: %w", err)
		}
		m := map[string]string{}
		if err := yaml.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("console texts %s.yaml: %w", lang, err)
		}
		c[lang] = m
	}
	return c, nil
}

// text returns key's text in lang, formatted with args; the English text
// when lang lacks it, and the key itself (visible, so a test catches it)
// when both do.
func (c catalog) text(lang, key string, args ...any) string {
	s, ok := c[lang][key]
	if !ok {
		if s, ok = c[Languages[0]][key]; !ok {
			return key
		}
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}

// pickLanguage chooses the first supported language of an
// Accept-Language header, or English.
func pickLanguage(header string) string {
	for part := range strings.SplitSeq(header, ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		base, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if slices.Contains(Languages, base) {
			return base
		}
	}
	return Languages[0]
}
