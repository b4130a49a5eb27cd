package sim

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/upswatch/upswatch/ups"
)

func TestParseEvent(t *testing.T) {
	tests := []struct {
		in   string
		want Event
	}{
		{"outage@30s+10m", Event{Kind: Outage, At: 30 * time.Second, For: 10 * time.Minute}},
		{"overload@0s+2m:123456789012", Event{Kind: Overload, For: 2 * time.Minute, Units: []ups.Serial{"123456789012"}}},
		{"commloss@1m+30s:123456789012,1234567890123456", Event{Kind: CommLoss, At: time.Minute, For: 30 * time.Second,
			Units: []ups.Serial{"123456789012", "1234567890123456"}}},
		{"flicker@45s", Event{Kind: Flicker, At: 45 * time.Second, For: FlickerDuration}},
		{"outage@1h", Event{Kind: Outage, At: time.Hour}},
		{"lowbattery@10s+1m", Event{Kind: LowBattery, At: 10 * time.Second, For: time.Minute}},
		{"low-battery@10s+1m", Event{Kind: LowBattery, At: 10 * time.Second, For: time.Minute}},
		{"LB@10s+1m", Event{Kind: LowBattery, At: 10 * time.Second, For: time.Minute}},
		{"Comm-Loss@0s+5s", Event{Kind: CommLoss, For: 5 * time.Second}},
		{"outage@0+1m30s: 123456789012 ", Event{Kind: Outage, For: 90 * time.Second, Units: []ups.Serial{"123456789012"}}},
		{"blackout@30s+5m:site=hq", Event{Kind: Outage, At: 30 * time.Second, For: 5 * time.Minute, Site: "hq"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseEvent(tt.in)
			if err != nil {
				t.Fatalf("ParseEvent(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseEvent(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			// String writes the syntax back; parsing it again gives the
			// same event.
			again, err := ParseEvent(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip via %q = %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseEventErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"outage", `invalid event "outage": want kind@at[+for][:serials]`},
		{"brownout@1s", `invalid event "brownout@1s": unknown kind "brownout" (want outage, lowbattery, overload, flicker or commloss)`},
		{"blackout@1s:site=", `invalid event "blackout@1s:site=": site= needs a site name`},
		{"outage@soon", `invalid event "outage@soon": start offset: time: invalid duration "soon"`},
		{"outage@-1s+1m", `invalid event "outage@-1s+1m": start offset must not be negative`},
		{"outage@1s+", `invalid event "outage@1s+": duration: time: invalid duration ""`},
		{"outage@1s+0s", `invalid event "outage@1s+0s": duration must be positive`},
		{"flicker@1s+5s", `invalid event "flicker@1s+5s": a flicker lasts 2s and takes no +duration`},
		{"outage@1s:12345", `invalid event "outage@1s:12345": serial must be exactly 12 or 16 digits: got "12345"`},
		{"outage@1s:123456789012,", `invalid event "outage@1s:123456789012,": serial must be exactly 12 or 16 digits: got ""`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseEvent(tt.in)
			if !errors.Is(err, ErrBadEvent) {
				t.Fatalf("ParseEvent(%q) err = %v, want ErrBadEvent", tt.in, err)
			}
			if err.Error() != tt.want {
				t.Fatalf("ParseEvent(%q) err =\n %s\nwant\n %s", tt.in, err, tt.want)
			}
		})
	}
}

func TestEventActiveAt(t *testing.T) {
	bounded := Event{Kind: Outage, At: 10 * time.Second, For: 5 * time.Second}
	open := Event{Kind: Outage, At: 10 * time.Second}
	tests := []struct {
		ev   Event
		at   time.Duration
		want bool
	}{
		{bounded, 9999 * time.Millisecond, false},
		{bounded, 10 * time.Second, true},
		{bounded, 14999 * time.Millisecond, true},
		{bounded, 15 * time.Second, false},
		{open, 9 * time.Second, false},
		{open, 1000 * time.Hour, true},
	}
	for _, tt := range tests {
		if got := tt.ev.activeAt(tt.at); got != tt.want {
			t.Errorf("%v activeAt(%v) = %v, want %v", tt.ev, tt.at, got, tt.want)
		}
	}
}

func TestEventAppliesTo(t *testing.T) {
	hq := Unit{Serial: "123456789012", Site: "hq"}
	branch := Unit{Serial: "123456789013", Site: "branch"}
	tests := []struct {
		event      string
		hq, branch bool
	}{
		{"outage@0s", true, true},
		{"blackout@0s+1m:site=hq", true, false},
		{"commloss@0s:123456789013", false, true},
	}
	for _, tt := range tests {
		ev, err := ParseEvent(tt.event)
		if err != nil {
			t.Fatal(err)
		}
		if got := ev.appliesTo(hq); got != tt.hq {
			t.Errorf("%s applies to the hq unit: %v, want %v", tt.event, got, tt.hq)
		}
		if got := ev.appliesTo(branch); got != tt.branch {
			t.Errorf("%s applies to the branch unit: %v, want %v", tt.event, got, tt.branch)
		}
	}
}
