package sim

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/upswatch/upswatch/ups"
)

// ReadUnits reads the units to simulate, one per line as
// "serial,password" or "serial password" (what registering a batch of
// units prints). Blank lines and lines starting with '#' are skipped.
func ReadUnits(r io.Reader) ([]Unit, error) {
	var units []Unit
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.FieldsFunc(line, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' })
		if len(fields) != 2 {
			// The line is not echoed: it holds a password.
			return nil, fmt.Errorf("units line %d: want serial,password, got %d fields", n, len(fields))
		}
		s, err := ups.ParseSerial(fields[0])
		if err != nil {
			return nil, fmt.Errorf("units line %d: %w", n, err)
		}
		units = append(units, Unit{Serial: s, Password: fields[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read units: %w", err)
	}
	return units, nil
}
