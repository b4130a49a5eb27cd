package influx

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/influxdata/influxdb-client-go/v2/api/write"

	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/ups"
)

// benchReadings is a batch as the history consumer gets it from the bus:
// 1000 units, ten typical variables each.
func benchReadings(n int, at time.Time) []ups.Reading {
	rs := make([]ups.Reading, n)
	for i := range rs {
		r := &rs[i]
		r.Serial = ups.Serial(fmt.Sprintf("%012d", 100000000000+i%1000))
		r.Time = at.Add(time.Duration(i/1000) * time.Millisecond)
		r.SetText("ups.status", "OL CHRG")
		for j, v := range []ups.Var{ups.BatteryCharge, ups.BatteryRuntime, ups.BatteryVoltage, ups.InputVoltage,
			ups.InputFrequency, ups.OutputVoltage, ups.UPSLoad, ups.UPSTemperature, ups.UPSRealpower} {
			r.SetNum(v.String(), float64(100+i%50+j)+0.5)
		}
	}
	return rs
}

// BenchmarkWriteReadings writes 5000-reading batches to a real influxd.
func BenchmarkWriteReadings(b *testing.B) {
	inf := testenv.Influxd(b)
	s, err := New(b.Context(), Config{URL: inf.URL, Org: inf.Org, Bucket: inf.Bucket, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 5000
	at := time.Now().Add(-time.Hour)
	rs := benchReadings(n, at)
	batches := 0
	b.ReportAllocs()
	for b.Loop() {
		// New times each round so InfluxDB stores rather than overwrites.
		for i := range rs {
			rs[i].Time = at.Add(time.Duration(batches*n+i) * time.Millisecond)
		}
		if err := s.WriteReadings(b.Context(), rs); err != nil {
			b.Fatal(err)
		}
		batches++
	}
	b.ReportMetric(float64(batches*n)/b.Elapsed().Seconds(), "readings/s")
}

// BenchmarkEncode compares building line protocol by hand with the
// client's write.NewPoint, per reading, without the server.
func BenchmarkEncode(b *testing.B) {
	rs := benchReadings(1000, time.Now())
	b.Run("append", func(b *testing.B) {
		e := &encoder{drop: func(string, int) {}}
		b.ReportAllocs()
		for b.Loop() {
			e.reset()
			for i := range rs {
				e.appendReading(&rs[i], len(rs[i].Texts) > 0)
			}
			_ = string(e.buf)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rs)), "ns/reading")
	})
	b.Run("write.NewPoint", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			pts := make([]*write.Point, 0, len(rs))
			for i := range rs {
				r := &rs[i]
				fields := make(map[string]any, len(r.Metrics)+1)
				for _, m := range r.Metrics {
					fields[m.Name] = m.Value
				}
				fields["status"] = r.Status.Raw
				pts = append(pts, write.NewPoint("ups_reading", map[string]string{"serial": string(r.Serial)}, fields, r.Time))
			}
			var sb []byte
			for _, p := range pts {
				sb = append(sb, write.PointToLineProtocol(p, time.Millisecond)...)
			}
			_ = sb
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rs)), "ns/reading")
	})
}
