package payload

import (
	"testing"

	"github.com/upswatch/upswatch/ups"
)

func TestIsTextual(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"driver.name", true},
		{"driver.parameter.pollinterval", true},
		{"driver.version.internal", true},
		{"ups.serial", true},
		{"device.serial", true},
		{"serial", true},
		{"ups.firmware", true},
		{"ups.firmware.aux", true},
		{"ups.mfr", true},
		{"ups.mfr.date", true},
		{"battery.mfr.date", true},
		{"ups.model", true},
		{"battery.date", true},
		{"ups.productid", true},
		{"ups.vendorid", true},
		{"ups.id", true},
		{"outlet.1.id", true},
		{"x.name", true},
		{"outlet.2.desc", true},
		{"ups.version", true},
		{"ups.version.x", true},
		{"ups.status", true},
		{"ups.beeper.status", true},
		{"device.type", true},
		{"ups.test.result", true},
		{"ups.alarm", true},
		{"ups.contacts", true},
		{"driver.parameter.port", true},
		{"x.port", true},

		{"battery.charge", false},
		{"ups.load", false},
		{"input.voltage", false},
		{"battery.runtime", false},
		{"ups.delay.shutdown", false},
		{"ups.test.interval", false},
		{"outlet.1.delay.start", false},
		{"input.transfer.reason", false}, // non-numeric anyway
		{"drivers.count", false},         // "driver." is a whole segment
		{"ups.serialnumber", false},      // last segment must match exactly
		{"ups.idle", false},
		{"ups.x_model", false},
		{"mfr", false},       // firmware/mfr/version count after the first segment
		{"version", false},   // idem
		{"ups.dated", false}, // last segment must match exactly
	}
	for _, tc := range tests {
		if got := isTextual([]byte(tc.name)); got != tc.want {
			t.Errorf("isTextual(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"battery.charge", true},
		{"output.L1-N.voltage", true},
		{"driver.flag.allow_killpower", true},
		{"ups.debug.V", true},
		{"", false},
		{"ups load", false},
		{"ups:load", false},
		{"ups.lo\u00e9d", false},
		{"ups/load", false},
		{string(make([]byte, 129)), false},
	} {
		if got := validName([]byte(tc.name)); got != tc.want {
			t.Errorf("validName(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestNameTable checks the invariants the decoder relies on: every known
// variable is in the table (so a name missing from it is unknown), ids
// are dense and unique, and each entry's facts are right.
func TestNameTable(t *testing.T) {
	ids := make([]bool, len(nameTable))
	for n, info := range nameTable {
		if info.name != n {
			t.Errorf("%q: name %q", n, info.name)
		}
		if info.id < 0 || info.id >= len(ids) || ids[info.id] {
			t.Errorf("%q: id %d not dense/unique", n, info.id)
		} else {
			ids[info.id] = true
		}
		if v, known := ups.LookupVar(n); known != info.known || (known && v != info.v) {
			t.Errorf("%q: known %v v %v; LookupVar says %v %v", n, info.known, info.v, known, v)
		}
		if info.textual != isTextual([]byte(n)) {
			t.Errorf("%q: textual %v", n, info.textual)
		}
		if !validName([]byte(n)) {
			t.Errorf("%q is not a valid name", n)
		}
	}
	for _, vi := range ups.Vars {
		info, ok := nameTable[vi.Name]
		if !ok || !info.known {
			t.Errorf("known variable %q missing from the name table", vi.Name)
		}
		if info.textual {
			t.Errorf("known numeric variable %q is textual", vi.Name)
		}
	}
	if seenWords*64 < len(nameTable) {
		t.Errorf("seenWords %d too small for %d names", seenWords, len(nameTable))
	}
}

func TestStrIndex(t *testing.T) {
	for _, idx := range []*strIndex{nameIdx, textIdx} {
		for i, k := range idx.keys {
			if got, ok := idx.lookup([]byte(k)); !ok || got != i {
				t.Errorf("lookup(%q) = %d, %v; want %d", k, got, ok, i)
			}
		}
	}
	for _, k := range []string{"", "x", "ups.statu", "ups.status.", "battery.charge.lo", "Ups.status",
		"outlet.3.delay.start", "input.transfer.low.mid"} {
		if i, ok := nameIdx.lookup([]byte(k)); ok {
			t.Errorf("lookup(%q) found %d", k, i)
		}
	}
	if id, ok := textIdx.lookup([]byte("")); !ok || textList[id] != "" {
		t.Errorf("empty text not interned")
	}
}
