package sim

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/upswatch/upswatch/ups"
)

func TestReadUnits(t *testing.T) {
	got, err := ReadUnits(strings.NewReader("# serial,password\n123456789012,s3cret\n\n  1234567890123456\tp@ss  \n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Unit{{Serial: "123456789012", Password: "s3cret"}, {Serial: "1234567890123456", Password: "p@ss"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ReadUnits = %+v, want %+v", got, want)
	}

	tests := []struct{ in, want string }{
		{"123456789012\n", "units line 1: want serial,password, got 1 fields"},
		{"# x\n123456789012,a,b\n", "units line 2: want serial,password, got 3 fields"},
		{"12345,pw\n", `units line 1: serial must be exactly 12 or 16 digits: got "12345"`},
	}
	for _, tt := range tests {
		_, err := ReadUnits(strings.NewReader(tt.in))
		if err == nil || err.Error() != tt.want {
			t.Errorf("ReadUnits(%q) err = %v, want %s", tt.in, err, tt.want)
		}
		if strings.Contains(tt.in, "12345,") && !errors.Is(err, ups.ErrInvalidSerial) {
			t.Errorf("err %v does not wrap ErrInvalidSerial", err)
		}
	}
}
