package yamlenv

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

type item struct {
	Name string `yaml:"name"`
}

type sample struct {
	Poll  time.Duration `yaml:"poll"`
	Count int           `yaml:"count"`
	Rate  float64       `yaml:"rate"`
	On    bool          `yaml:"on"`
	Inner struct {
		URL string `yaml:"url"`
	} `yaml:"inner"`
	Items   []item `yaml:"items"`
	Skipped string `yaml:"-"`
}

func TestKeysAndNames(t *testing.T) {
	s := Scheme{Prefix: "X_"}
	got := s.Keys(reflect.TypeOf(sample{}))
	want := [][2]string{{"poll", "X_POLL"}, {"count", "X_COUNT"}, {"rate", "X_RATE"}, {"on", "X_ON"},
		{"inner.url", "X_INNER_URL"}, {"items", "X_ITEMS"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
}

func TestApply(t *testing.T) {
	s := Scheme{Prefix: "X_"}
	env := map[string]string{"X_POLL": "2s", "X_COUNT": " 7 ", "X_RATE": "0.5", "X_ON": "true",
		"X_INNER_URL": "tcp://h:1", "X_ITEMS": "[{name: a}, {name: b}]"}
	var c sample
	if err := s.Apply(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.Poll != 2*time.Second || c.Count != 7 || c.Rate != 0.5 || !c.On || c.Inner.URL != "tcp://h:1" ||
		len(c.Items) != 2 || c.Items[1].Name != "b" {
		t.Fatalf("config %+v", c)
	}
	bad := map[string]string{"X_POLL": "soon", "X_COUNT": "many", "X_RATE": "fast", "X_ON": "maybe", "X_ITEMS": "[{nmae: a}]"}
	err := s.Apply(&c, func(k string) (string, bool) { v, ok := bad[k]; return v, ok })
	for _, w := range []string{`config: poll (from X_POLL): not a duration like 10s or 5m: "soon"`,
		`config: count (from X_COUNT): not an integer: "many"`, `config: rate (from X_RATE): not a number: "fast"`,
		`config: on (from X_ON): not a boolean: "maybe"`, `config: items (from X_ITEMS): not a YAML list`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
}

func TestDecode(t *testing.T) {
	var c sample
	if err := Decode(nil, &c); err != nil {
		t.Fatalf("empty document: %v", err)
	}
	if err := Decode([]byte("poll: 3s\ninner: {url: x}\n"), &c); err != nil || c.Poll != 3*time.Second || c.Inner.URL != "x" {
		t.Fatalf("decode: %+v, %v", c, err)
	}
	if err := Decode([]byte("pol: 3s\n"), &c); err == nil || !strings.Contains(err.Error(), "field pol not found") {
		t.Fatalf("misspelt key: %v", err)
	}
}
