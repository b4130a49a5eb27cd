package buffer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var t0 = time.UnixMilli(1764000000000)

func payload(i int) []byte {
	return []byte(fmt.Sprintf(`{"ts":%d,"n":%d}`, t0.Add(time.Duration(i)*time.Second).UnixMilli(), i))
}

func open(t *testing.T, dir string, mod func(*Options)) *Buffer {
	t.Helper()
	o := Options{Dir: dir, MaxBytes: 1 << 20, MaxAge: time.Hour, Now: func() time.Time { return t0.Add(time.Minute) }}
	if mod != nil {
		mod(&o)
	}
	b, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func appendN(t *testing.T, b *Buffer, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := b.Append(t0.Add(time.Duration(i)*time.Second), payload(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// drain forwards everything, max per batch, and returns the record numbers.
func drain(t *testing.T, b *Buffer, max int) []int {
	t.Helper()
	var got []int
	for {
		recs, c, err := b.Peek(max, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return got
		}
		if len(recs) > max {
			t.Fatalf("Peek(%d) returned %d", max, len(recs))
		}
		for _, r := range recs {
			var n int
			fmt.Sscanf(string(r.Data[bytes.Index(r.Data, []byte(`"n":`))+4:]), "%d", &n)
			if !bytes.Equal(r.Data, payload(n)) || !r.Time.Equal(t0.Add(time.Duration(n)*time.Second)) {
				t.Fatalf("record %d: %s at %v", n, r.Data, r.Time)
			}
			got = append(got, n)
		}
		if err := b.Ack(c); err != nil {
			t.Fatal(err)
		}
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func equal(a, b []int) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestOrderAndReopen(t *testing.T) {
	for _, tc := range []struct {
		name     string
		segBytes int64
		batch    int
	}{
		{"one segment", 0, 500},
		{"many small segments", 200, 7},
		{"batch of one", 100, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := open(t, dir, func(o *Options) { o.SegmentBytes = tc.segBytes })
			appendN(t, b, 0, 50)
			// Forward part, then "restart": the rest comes back in order.
			recs, c, err := b.Peek(20, 1<<20)
			if err != nil || len(recs) != 20 {
				t.Fatalf("Peek = %d, %v", len(recs), err)
			}
			if err := b.Ack(c); err != nil {
				t.Fatal(err)
			}
			if b.Len() != 30 {
				t.Fatalf("Len = %d, want 30", b.Len())
			}
			b.Close()
			b = open(t, dir, func(o *Options) { o.SegmentBytes = tc.segBytes })
			if b.Len() != 30 {
				t.Fatalf("Len after reopen = %d, want 30", b.Len())
			}
			appendN(t, b, 50, 60)
			if got := drain(t, b, tc.batch); !equal(got, seq(20, 60)) {
				t.Fatalf("got %v", got)
			}
			if b.Len() != 0 {
				t.Fatalf("Len = %d after drain", b.Len())
			}
			if files, _ := filepath.Glob(filepath.Join(dir, "seg-*.log")); len(files) != 1 {
				t.Fatalf("forwarded segments not deleted: %v", files)
			}
		})
	}
}

// A full buffer drops the oldest records, counts them, and keeps the
// newest in order.
func TestFullDropsOldest(t *testing.T) {
	b := open(t, t.TempDir(), func(o *Options) { o.MaxBytes = 2000 })
	appendN(t, b, 0, 200)
	st := b.Stats()
	if st.DroppedFull == 0 || st.Bytes > 2000 {
		t.Fatalf("stats %+v: nothing dropped or over the bound", st)
	}
	got := drain(t, b, 500)
	if int64(len(got))+st.DroppedFull != 200 {
		t.Fatalf("kept %d + dropped %d != 200", len(got), st.DroppedFull)
	}
	if !equal(got, seq(200-len(got), 200)) {
		t.Fatalf("kept %v, want the newest in order", got)
	}
}

// Records past max_age are dropped and counted when reached.
func TestMaxAge(t *testing.T) {
	now := t0
	b := open(t, t.TempDir(), func(o *Options) { o.MaxAge = 30 * time.Second; o.Now = func() time.Time { return now } })
	appendN(t, b, 0, 60)
	now = t0.Add(75 * time.Second) // records 0..44 are over 30 s old
	got := drain(t, b, 10)
	if !equal(got, seq(45, 60)) {
		t.Fatalf("got %v", got)
	}
	if st := b.Stats(); st.DroppedAge != 45 {
		t.Fatalf("DroppedAge = %d, want 45", st.DroppedAge)
	}
}

// A record torn by a crash at the end of the newest segment is cut off;
// damage elsewhere sets the segment aside, reported, and the rest is
// forwarded.
func TestDamage(t *testing.T) {
	for _, tc := range []struct {
		name        string
		damage      func(t *testing.T, files []string)
		wantCorrupt int64
		wantTorn    int64
		lost        bool // records of the damaged segment are lost
	}{
		{"torn tail", func(t *testing.T, files []string) {
			f, _ := os.OpenFile(files[len(files)-1], os.O_WRONLY|os.O_APPEND, 0)
			f.Write(encode(t0, []byte(`{"partial":true}`))[:20])
			f.Close()
		}, 0, 1, false},
		{"flipped byte", func(t *testing.T, files []string) {
			data, _ := os.ReadFile(files[0])
			data[len(data)/2] ^= 0x40
			os.WriteFile(files[0], data, 0o600)
		}, 1, 0, true},
		{"absurd length", func(t *testing.T, files []string) {
			data, _ := os.ReadFile(files[0])
			copy(data, []byte{0xff, 0xff, 0xff, 0xff})
			os.WriteFile(files[0], data, 0o600)
		}, 1, 0, true},
		{"garbage file", func(t *testing.T, files []string) {
			os.WriteFile(files[0], bytes.Repeat([]byte("garbage!"), 100), 0o600)
		}, 1, 0, true},
		{"truncated older segment", func(t *testing.T, files []string) {
			data, _ := os.ReadFile(files[0])
			os.WriteFile(files[0], data[:len(data)-5], 0o600)
		}, 1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := open(t, dir, func(o *Options) { o.SegmentBytes = 300 })
			appendN(t, b, 0, 40)
			b.Close()
			files, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
			if len(files) < 3 {
				t.Fatalf("want several segments, got %v", files)
			}
			first, _ := os.ReadFile(files[0])
			inFirst := bytes.Count(first, []byte(`"n":`))
			tc.damage(t, files)
			b = open(t, dir, func(o *Options) { o.SegmentBytes = 300 })
			st := b.Stats()
			if st.CorruptFiles != tc.wantCorrupt || st.TruncatedTails != tc.wantTorn {
				t.Fatalf("stats %+v", st)
			}
			got := drain(t, b, 500)
			want := seq(0, 40)
			if tc.lost {
				want = seq(inFirst, 40)
			}
			if !equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			if tc.wantCorrupt > 0 {
				if c, _ := filepath.Glob(filepath.Join(dir, "*.corrupt")); len(c) != 1 {
					t.Fatalf("corrupt segment not set aside: %v", c)
				}
			}
			// Still usable.
			appendN(t, b, 100, 101)
			if got := drain(t, b, 5); !equal(got, []int{100}) {
				t.Fatalf("after damage: %v", got)
			}
		})
	}
}

// Damage appearing after Open (a disk error, an operator's editor) is
// found by Peek: reported, skipped, no crash.
func TestDamageWhileRunning(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, func(o *Options) { o.SegmentBytes = 300 })
	appendN(t, b, 0, 40)
	files, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	first, _ := os.ReadFile(files[1])
	inSecond := bytes.Count(first, []byte(`"n":`))
	data, _ := os.ReadFile(files[0])
	inFirst := bytes.Count(data, []byte(`"n":`))
	first[30] ^= 1
	os.WriteFile(files[1], first, 0o600)
	got := drain(t, b, 500)
	want := append(seq(0, inFirst), seq(inFirst+inSecond, 40)...)
	if !equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if st := b.Stats(); st.CorruptFiles != 1 || st.Records != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// The helper process for TestSurvivesKill: appends until killed, printing
// each record number once Append has returned.
func TestMain(m *testing.M) {
	if dir := os.Getenv("BUFFER_KILL_HELPER"); dir != "" {
		b, err := Open(Options{Dir: dir, MaxBytes: 1 << 30, MaxAge: 10 * 365 * 24 * time.Hour, SegmentBytes: 4096})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		w := bufio.NewWriter(os.Stdout)
		for i := 0; ; i++ {
			if err := b.Append(t0.Add(time.Duration(i)*time.Second), payload(i)); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Fprintln(w, i)
			w.Flush()
		}
	}
	os.Exit(m.Run())
}

// kill -9 in the middle of appending: every record whose Append returned
// is there after reopening, in order, and the file is not corrupt.
func TestSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BUFFER_KILL_HELPER="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	last := -1
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "error") {
			t.Fatal(sc.Text())
		}
		last, _ = strconv.Atoi(sc.Text())
		if last == 300 {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	for sc.Scan() {
		last, _ = strconv.Atoi(sc.Text())
	}
	_ = cmd.Wait()
	if last < 300 {
		t.Fatalf("helper stopped at %d", last)
	}
	b := open(t, dir, func(o *Options) { o.MaxBytes = 1 << 30; o.MaxAge = 10 * 365 * 24 * time.Hour })
	st := b.Stats()
	if st.CorruptFiles != 0 {
		t.Fatalf("corrupt after kill: %+v", st)
	}
	got := drain(t, b, 500)
	if len(got) < last+1 || !equal(got, seq(0, len(got))) {
		t.Fatalf("after kill: %d records (last confirmed %d): %v", len(got), last, got)
	}
}

func FuzzReadRecord(f *testing.F) {
	f.Add(encode(t0, []byte(`{"ups.status":"OL"}`)))
	f.Add(append(encode(t0, []byte("a")), encode(t0, []byte("bb"))...))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			rec, err := readRecord(r)
			if err != nil {
				return
			}
			// A record that decodes re-encodes to the same bytes.
			enc := encode(rec.Time, rec.Data)
			if !bytes.Contains(data, enc) {
				t.Fatalf("record %q does not re-encode to its bytes", rec.Data)
			}
		}
	})
}

// A buffer directory of arbitrary files opens without panicking.
func FuzzOpen(f *testing.F) {
	f.Add(encode(t0, []byte("x")), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, seg, cursor []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "seg-0000000000000001.log"), seg, 0o600)
		os.WriteFile(filepath.Join(dir, "seg-0000000000000002.log"), seg, 0o600)
		os.WriteFile(filepath.Join(dir, cursorFile), cursor, 0o600)
		b, err := Open(Options{Dir: dir})
		if err != nil {
			return
		}
		defer b.Close()
		for range 3 {
			recs, c, err := b.Peek(10, 1<<20)
			if err != nil || len(recs) == 0 {
				break
			}
			if err := b.Ack(c); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// Two buffers on one directory would clobber each other's segments: the
// second Open is refused until the first is closed.
func TestLocked(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, nil)
	if _, err := Open(Options{Dir: dir}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	b.Close()
	b2, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	b2.Close()
}
