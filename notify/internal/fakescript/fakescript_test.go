package fakescript

import (
	"testing"
	"time"
)

func TestScriptPrecedenceAndWait(t *testing.T) {
	s := New[string, int]("fake")
	if _, scripted, _ := s.Decide("a"); scripted {
		t.Fatal("fresh script has a reply")
	}
	s.FailAll(1)
	s.FailKey("a", 2)
	s.SetDelay(time.Millisecond)
	tests := []struct {
		key  string
		want int
	}{{"a", 2}, {"b", 1}}
	for _, tt := range tests {
		if r, ok, d := s.Decide(tt.key); !ok || r != tt.want || d != time.Millisecond {
			t.Errorf("Decide(%q) = %d, %v, %v", tt.key, r, ok, d)
		}
	}
	s.Down(3)
	if r, _, _ := s.Decide("a"); r != 3 {
		t.Fatalf("down does not override: %d", r)
	}
	s.SetUp()
	s.Record("one")
	s.Reset()
	if _, ok, d := s.Decide("a"); ok || d != 0 {
		t.Fatal("Reset kept scripts")
	}
	go s.Record("two")
	got, err := s.WaitRequests(2, 5*time.Second)
	if err != nil || len(got) != 2 || got[0] != "one" {
		t.Fatalf("WaitRequests = %v, %v (Reset must keep the recorded requests)", got, err)
	}
	if _, err := s.WaitRequests(3, 10*time.Millisecond); err == nil {
		t.Fatal("WaitRequests did not time out")
	}
}
