package main

import (
	"strings"
	"testing"
	"time"
)

func TestSummary(t *testing.T) {
	serve := result{name: "serve", kind: kindServe, connected: 100, published: 1000, stored: 1000, complete: true,
		elapsed: 2 * time.Second, cpu: 0.02, rss: 100 << 20,
		otherCPU: []namedCPU{{"mosquitto", 0.01}, {"influxd", 0.03}}}
	tele := result{name: "telegraf", kind: kindTelegraf, connected: 100, published: 1000, stored: 1000, complete: true,
		elapsed: 4 * time.Second, cpu: 0.05, rss: 50 << 20,
		otherCPU: []namedCPU{{"mosquitto", 0.01}, {"influxd", 0.04}}}
	for _, tc := range []struct {
		name    string
		results []result
		want    []string // substrings of the summary
		notWant []string
	}{
		{
			name:    "side by side",
			results: []result{serve, tele},
			// serve: 500/s, 20 us own, 60 us stack; Telegraf: 250/s, 50 us, 100 us.
			want: []string{"500", "20.0", "60.0", "1024",
				"rate 2.00x, consumer CPU per reading 0.40x, stack CPU per reading 0.60x"},
		},
		{
			name:    "no Telegraf run: no ratios",
			results: []result{serve},
			want:    []string{"500"},
			notWant: []string{"upswatch / Telegraf"},
		},
		{
			name:    "incomplete run marked",
			results: []result{{name: "embedded", kind: kindEmbedded, published: 10, stored: 5, elapsed: time.Second}},
			want:    []string{"embedded INCOMPLETE"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := summary(tc.results)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("summary lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("summary has %q:\n%s", w, got)
				}
			}
		})
	}
}
