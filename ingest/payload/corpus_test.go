package payload

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// corpusDir finds the NUT device dump library kept beside the repository
// (../shared/nut-ddl from the repository root). It is not part of the
// repository, so the test skips without it.
func corpusDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("repository root not found")
		}
		dir = parent
	}
	corpus := filepath.Join(dir, "..", "shared", "nut-ddl")
	if _, err := os.Stat(corpus); err != nil {
		t.Skipf("NUT device dumps not found beside the repository: %v", err)
	}
	return corpus
}

// TestNUTDeviceDumps decodes every real upsc dump as a payload: none may
// be rejected. Each dump is then re-encoded as the JSON object a device
// would send, once with every value a string (as NUT reports them) and
// once with the metrics as JSON numbers, and must decode to the same
// reading.
func TestNUTDeviceDumps(t *testing.T) {
	corpus := corpusDir(t)
	d := New(Limits{})
	n := 0
	err := filepath.WalkDir(corpus, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(path, ".dev") {
			return err
		}
		n++
		dump, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(corpus, path)
		rs, err := d.Decode(testSerial, dump, received, nil)
		if err != nil {
			t.Errorf("%s: rejected: %v", rel, err)
			return nil
		}
		if len(rs) != 1 {
			t.Errorf("%s: %d readings, want 1", rel, len(rs))
			return nil
		}
		want := viewOf(&rs[0])

		asStrings := dumpAsJSON(t, dump)
		rs, err = d.Decode(testSerial, asStrings, received, nil)
		if err != nil {
			t.Errorf("%s: JSON of strings rejected: %v\n%s", rel, err, asStrings)
			return nil
		}
		if got := viewOf(&rs[0]); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: JSON of strings decodes to\n%+v\nupsc to\n%+v", rel, got, want)
		}

		asNumbers := readingAsJSON(t, want)
		rs, err = d.Decode(testSerial, asNumbers, received, nil)
		if err != nil {
			t.Errorf("%s: JSON with numbers rejected: %v\n%s", rel, err, asNumbers)
			return nil
		}
		if got := viewOf(&rs[0]); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: JSON with numbers decodes to\n%+v\nupsc to\n%+v", rel, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("decoded %d NUT device dumps, none rejected; %d out-of-range values dropped over the three decodings of each", n, d.Dropped())
	if n == 0 {
		t.Fatal("no dumps found")
	}
}

// dumpAsJSON turns upsc text into a JSON object of strings, with its own
// reading of the format (not the decoder's), so the two paths check each
// other.
func dumpAsJSON(t *testing.T, dump []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteByte('{')
	for line := range strings.Lines(string(dump)) {
		// upsc pads with ASCII white space only; U+00A0 in a model name
		// is part of the value.
		line = strings.Trim(line, " \t\r\n")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		if i := strings.Index(line, "\t#"); i >= 0 {
			line = line[:i]
		}
		name, value, _ := strings.Cut(strings.Trim(line, " \t"), ":")
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		writeJSONString(t, &b, name)
		b.WriteByte(':')
		writeJSONString(t, &b, strings.Trim(value, " \t"))
	}
	b.WriteByte('}')
	return b.Bytes()
}

// readingAsJSON encodes a decoded reading back as a JSON object, metrics
// as JSON numbers.
func readingAsJSON(t *testing.T, v view) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteByte('{')
	sep := func() {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
	}
	if v.HasStatus {
		sep()
		writeJSONString(t, &b, "ups.status")
		b.WriteByte(':')
		writeJSONString(t, &b, v.Status)
	}
	for name, x := range v.Metrics {
		sep()
		writeJSONString(t, &b, name)
		b.WriteByte(':')
		b.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
	}
	for name, s := range v.Texts {
		sep()
		writeJSONString(t, &b, name)
		b.WriteByte(':')
		writeJSONString(t, &b, s)
	}
	b.WriteByte('}')
	return b.Bytes()
}

func writeJSONString(t *testing.T, b *bytes.Buffer, s string) {
	t.Helper()
	q, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	b.Write(q)
}
