package sim

import (
	"fmt"
	"testing"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// BenchmarkRun drives the whole publishing path, paho included, against
// the in-process broker, which shares the CPU: one op is one reading slot
// at an unreachable rate, so the units publish as fast as the broker
// acknowledges; connecting and disconnecting are not timed. It reports
// the acknowledged readings per second and the slots skipped because a
// unit had maxPending readings unacknowledged.
func BenchmarkRun(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("units=%d", n), func(b *testing.B) {
			units := make([]Unit, n)
			for i := range units {
				units[i] = Unit{Serial: ups.Serial(fmt.Sprintf("%012d", 500000000000+i)), Password: fmt.Sprintf("pw%d", i)}
			}
			url, _ := startBroker(b, units)
			count := max(b.N/n, 1)
			s, err := New(Config{BrokerURL: url, Units: units, Rate: 1e9, Count: count, QoS: 1})
			if err != nil {
				b.Fatal(err)
			}
			s.onPublishing, s.onPublished = b.ResetTimer, b.StopTimer
			if err := s.Run(b.Context()); err != nil {
				b.Fatal(err)
			}
			st := s.Stats()
			b.ReportMetric(float64(st.Acked)/time.Since(st.Start).Seconds(), "acked/s")
			b.ReportMetric(float64(st.Skipped), "skipped")
			if st.Published+st.Skipped != uint64(count*n) || st.Errors != 0 || st.Acked != st.Published {
				b.Fatalf("stats %+v for %d slots", st, count*n)
			}
		})
	}
}
