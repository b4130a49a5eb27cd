package ready

import "testing"

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestSignal(t *testing.T) {
	var s Signal
	first := s.C()
	steps := []struct {
		name string
		do   func()
		want bool
	}{
		{"zero value", func() {}, false},
		{"up", s.Up, true},
		{"up again", s.Up, true},
		{"down", s.Down, false},
		{"down again", s.Down, false},
		{"up after down", s.Up, true},
	}
	for _, st := range steps {
		st.do()
		if got := s.Now(); got != st.want {
			t.Fatalf("%s: Now() = %v, want %v", st.name, got, st.want)
		}
		if got := closed(s.C()); got != st.want {
			t.Fatalf("%s: C() closed = %v, want %v", st.name, got, st.want)
		}
	}
	if !closed(first) {
		t.Fatal("the channel of the first run was not closed when it came up")
	}
}
