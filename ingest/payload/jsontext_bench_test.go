package payload

import (
	"bytes"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/upswatch/upswatch/ups"
)

// jsontextDecoder is the alternative to the hand-written decoder that the
// issue asked to compare against: the streaming tokenizer of
// encoding/json/jsontext (here the module it is developed in, the same
// code, since the standard library's needs GOEXPERIMENT=jsonv2), building
// the same ups.Reading, names interned, numeric strings parsed. It checks
// less than Decode (no limits, no ts forms but unix ms, no ranges), so it
// is a lower bound of what a jsontext-based decoder would cost.
type jsontextDecoder struct {
	dec   *jsontext.Decoder
	rd    bytes.Reader
	buf   []byte
	names map[string]string
}

func newJSONTextDecoder() *jsontextDecoder {
	return &jsontextDecoder{dec: jsontext.NewDecoder(bytes.NewReader(nil)), names: map[string]string{}}
}

func (j *jsontextDecoder) name(b []byte) string {
	if s, ok := j.names[string(b)]; ok {
		return s
	}
	s := string(b)
	j.names[s] = s
	return s
}

var errNotObject = errors.New("not a JSON object")

func (j *jsontextDecoder) decode(payload []byte, r *ups.Reading) error {
	j.rd.Reset(payload)
	j.dec.Reset(&j.rd)
	tok, err := j.dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '{' {
		return errNotObject
	}
	for j.dec.PeekKind() != '}' {
		k, err := j.dec.ReadValue()
		if err != nil {
			return err
		}
		if j.buf, err = jsontext.AppendUnquote(j.buf[:0], k); err != nil {
			return err
		}
		name := j.name(j.buf)
		v, err := j.dec.ReadValue()
		if err != nil {
			return err
		}
		switch v.Kind() {
		case '0':
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				return err
			}
			if name == "ts" {
				r.Time = time.UnixMilli(int64(f)).UTC()
				continue
			}
			r.SetNum(name, f)
		case '"':
			if j.buf, err = jsontext.AppendUnquote(j.buf[:0], v); err != nil {
				return err
			}
			if f, err := strconv.ParseFloat(string(j.buf), 64); err == nil {
				r.SetNum(name, f)
			} else {
				r.SetText(name, j.name(j.buf))
			}
		}
	}
	_, err = j.dec.ReadToken()
	return err
}

// BenchmarkJSONTextObject decodes the 20-variable object of
// BenchmarkDecodeJSONObject with jsontext: compare the two in one run.
func BenchmarkJSONTextObject(b *testing.B) {
	payload := benchObject(1764000000000)
	j := newJSONTextDecoder()
	var r ups.Reading
	if err := j.decode(payload, &r); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset()
		if err := j.decode(payload, &r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/reading")
}

// TestJSONTextDecoderAgrees: the benchmark's alternative builds the
// reading Decode builds, so the comparison is of like with like.
func TestJSONTextDecoderAgrees(t *testing.T) {
	payload := benchObject(1764000000000)
	want, err := New(Limits{}).Decode(testSerial, payload, received, nil)
	if err != nil || len(want) != 1 {
		t.Fatalf("Decode: %v", err)
	}
	var got ups.Reading
	if err := newJSONTextDecoder().decode(payload, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != want[0].Status || len(got.Metrics) != len(want[0].Metrics) || len(got.Texts) != len(want[0].Texts) {
		t.Fatalf("jsontext reading %+v\nDecode's %+v", got, want[0])
	}
	for _, m := range want[0].Metrics {
		if v, ok := numOf(&got, m.Name); !ok || v != m.Value {
			t.Errorf("%s = %v, %v; want %v", m.Name, v, ok, m.Value)
		}
	}
	for _, x := range want[0].Texts {
		if v, ok := got.Text(x.Name); !ok || v != x.Value {
			t.Errorf("%s = %q, %v; want %q", x.Name, v, ok, x.Value)
		}
	}
}

func numOf(r *ups.Reading, name string) (float64, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m.Value, true
		}
	}
	return 0, false
}

// BenchmarkDecodeVsJSONText alternates Decode and the jsontext decoder on
// the same object in rounds of 1,000, so both meet the same machine load
// (on a shared box separate benchmarks are minutes apart), and reports
// each one's ns/reading and their ratio.
func BenchmarkDecodeVsJSONText(b *testing.B) {
	payload := benchObject(1764000000000)
	d := New(Limits{})
	dst := make([]ups.Reading, 0, 1)
	j := newJSONTextDecoder()
	var r ups.Reading
	var hand, jt time.Duration
	const round = 1000
	for b.Loop() {
		t0 := time.Now()
		for range round {
			var err error
			if dst, err = d.Decode(testSerial, payload, received, dst[:0]); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		for range round {
			r.Reset()
			if err := j.decode(payload, &r); err != nil {
				b.Fatal(err)
			}
		}
		hand += t1.Sub(t0)
		jt += time.Since(t1)
	}
	n := float64(b.N * round)
	b.ReportMetric(float64(hand.Nanoseconds())/n, "hand-ns/reading")
	b.ReportMetric(float64(jt.Nanoseconds())/n, "jsontext-ns/reading")
	b.ReportMetric(float64(jt)/float64(hand), "jsontext/hand")
}
