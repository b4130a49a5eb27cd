package ups

import (
	"errors"
	"fmt"
	"hash/fnv"
)

// Serial is a UPS unit's serial number: exactly 12 or 16 ASCII digits.
// The serial in the MQTT topic is the unit's identity.
type Serial string

// ErrInvalidSerial is returned (wrapped) by ParseSerial for anything that is
// not 12 or 16 digits.
var ErrInvalidSerial = errors.New("serial must be exactly 12 or 16 digits")

// ParseSerial validates s as a serial number.
func ParseSerial(s string) (Serial, error) {
	if !ValidSerial(s) {
		return "", fmt.Errorf("%w: got %q", ErrInvalidSerial, truncate(s, 40))
	}
	return Serial(s), nil
}

// ValidSerial reports whether s has exactly 12 or 16 digits. It does not
// allocate: the ingest calls it for every message.
func ValidSerial(s string) bool {
	if len(s) != 12 && len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Partition maps a serial to one of n bus partitions. The mapping (FNV-1a,
// 32 bit) is part of the bus contract: it must never change for the life of
// a stream, or a unit's readings would be split across partitions and lose
// their order.
func Partition(s Serial, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return int(h.Sum32() % uint32(n))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
