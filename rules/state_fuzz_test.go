package rules

import (
	"errors"
	"testing"
	"time"
)

// FuzzUnmarshalState: any bytes (a corrupt KV entry) decode to a state or
// to ErrBadState, never a panic; a state that decodes encodes to bytes
// that decode to the same encoding again.
func FuzzUnmarshalState(f *testing.F) {
	e := NewEvaluator(nil)
	st := &UnitState{Site: "depot"}
	r := typical("OB DISCHRG RB", 0, 15, 100)
	for k := range 5 {
		r.Time = t0.Add(time.Duration(k) * 10 * time.Second)
		e.Evaluate(st, &r, r.Time, nil)
	}
	seed, err := st.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	empty, _ := new(UnitState).MarshalBinary()
	f.Add(empty)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s UnitState
		if err := s.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("error %v is not ErrBadState", err)
			}
			return
		}
		enc, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("encode a decoded state: %v", err)
		}
		var again UnitState
		if err := again.UnmarshalBinary(enc); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if enc2, _ := again.MarshalBinary(); string(enc2) != string(enc) {
			t.Fatalf("re-encoding differs:\n%x\n%x", enc, enc2)
		}
	})
}
