package web

import (
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/upswatch/upswatch/ups"
)

func TestClassify(t *testing.T) {
	r := func(status string) *ups.Reading {
		x := &ups.Reading{}
		x.Status = ups.ParseStatus(status)
		return x
	}
	offline := &ups.Reading{Presence: ups.PresenceOffline}
	for _, tc := range []struct {
		name   string
		latest *ups.Reading
		firing []string
		want   string
	}{
		{"no reading", nil, nil, StateNoData},
		{"no reading but an alert", nil, []string{"overload"}, StateAlarm},
		{"on line", r("OL CHRG"), nil, StateOnline},
		{"on battery", r("OB DISCHRG"), nil, StateOnBattery},
		{"on battery by the alert (UT quirk: OL DISCHRG at 0 V)", r("OL DISCHRG"), []string{"on_battery"}, StateOnBattery},
		{"low battery flag", r("OB DISCHRG LB"), nil, StateLowBattery},
		{"low battery alert", r("OB"), []string{"low_battery", "on_battery"}, StateLowBattery},
		{"lost contact beats all", r("OB LB"), []string{"comm_lost"}, StateLost},
		{"offline will", offline, nil, StateLost},
		{"overload flag", r("OL OVER"), nil, StateAlarm},
		{"replace battery", r("OL RB"), nil, StateAlarm},
		{"any other alert", r("OL"), []string{"temperature"}, StateAlarm},
		{"unknown tokens are not alarms", r("OL HE"), nil, StateOnline},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.latest, tc.firing); got != tc.want {
				t.Fatalf("classify = %s, want %s", got, tc.want)
			}
		})
	}
}

// The two languages must have the same texts with the same verbs, so a
// page never shows a key or a %!d(MISSING).
func TestTextsMatch(t *testing.T) {
	c, err := loadCatalog(i18nFS)
	if err != nil {
		t.Fatal(err)
	}
	verbs := regexp.MustCompile(`%[a-z]`)
	en, vi := c["en"], c["vi"]
	for k, v := range en {
		w, ok := vi[k]
		if !ok {
			t.Errorf("vi.yaml lacks %s", k)
			continue
		}
		if !slices.Equal(verbs.FindAllString(v, -1), verbs.FindAllString(w, -1)) {
			t.Errorf("%s: verbs differ: %q vs %q", k, v, w)
		}
	}
	for k := range vi {
		if _, ok := en[k]; !ok {
			t.Errorf("en.yaml lacks %s", k)
		}
	}
	if got := c.text("vi", "login.limited", 3); got != "Đăng nhập sai quá nhiều lần. Hãy thử lại sau 3 phút." {
		t.Errorf("formatted text %q", got)
	}
	if got := c.text("fr", "login.submit"); got != "Sign in" {
		t.Errorf("fallback to English: %q", got)
	}
	if got := c.text("en", "no.such.key"); got != "no.such.key" {
		t.Errorf("missing key shows %q", got)
	}
}

// Every text a template asks for exists.
func TestTemplatesUseKnownTexts(t *testing.T) {
	c, err := loadCatalog(i18nFS)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\.T "([a-z_.]+)"`)
	names, _ := templateFS.ReadDir("templates")
	for _, n := range names {
		b, _ := templateFS.ReadFile("templates/" + n.Name())
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			if _, ok := c["en"][m[1]]; !ok {
				t.Errorf("%s uses unknown text %s", n.Name(), m[1])
			}
		}
	}
}

func TestPickLanguage(t *testing.T) {
	for h, want := range map[string]string{
		"": "en", "vi-VN,vi;q=0.9,en;q=0.8": "vi", "fr-FR, en;q=0.5": "en", "de": "en", "VI": "vi",
	} {
		if got := pickLanguage(h); got != want {
			t.Errorf("pickLanguage(%q) = %s, want %s", h, got, want)
		}
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"": "/", "/units/123456789012": "/units/123456789012", "/?site=hq": "/?site=hq",
		"//evil.example/": "/", "/\\evil.example": "/", "https://evil.example/": "/", "units": "/",
		"javascript:alert(1)": "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEveryFor(t *testing.T) {
	for span, want := range map[time.Duration]time.Duration{
		time.Minute: 10 * time.Second, 6 * time.Hour: 11 * time.Second, 7 * 24 * time.Hour: 5 * time.Minute,
		400 * 24 * time.Hour: 5 * time.Hour,
	} {
		if got := everyFor(span); got != want {
			t.Errorf("everyFor(%v) = %v, want %v", span, got, want)
		}
	}
}

func TestHashAssets(t *testing.T) {
	if v := hashAssets(fstest.MapFS{}); v != "" {
		t.Errorf("no assets: version %q", v)
	}
	fs := fstest.MapFS{"dist/app.js": {Data: []byte("a")}, "dist/app.css": {Data: []byte("b")}}
	v1 := hashAssets(fs)
	fs["dist/app.js"] = &fstest.MapFile{Data: []byte("c")}
	if v2 := hashAssets(fs); v1 == "" || v1 == v2 {
		t.Errorf("versions %q, %q: want non-empty and changing with the content", v1, v2)
	}
}

// The scripts and styles a browser downloads weigh at most 100 KiB
// gzipped (htmx, uPlot and ours).
func TestAssetWeight(t *testing.T) {
	static, _ := fs.Sub(staticFS, "static")
	if hashAssets(static) == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("console assets are not built (make assets)")
		}
		t.Skip("console assets are not built: run make assets")
	}
	total := 0
	for _, name := range []string{"dist/app.js", "dist/app.css"} {
		b, err := fs.ReadFile(static, name)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		t.Logf("%s: %d bytes, %d gzipped", name, len(b), buf.Len())
		total += buf.Len()
	}
	if total > 100<<10 {
		t.Fatalf("console assets weigh %d bytes gzipped, over 100 KiB", total)
	}
}
