// Package buffer is the agent's on-disk store-and-forward queue: readings
// that could not be published wait here, oldest first, until the broker
// takes them again.
//
// # Layout
//
// A buffer is a directory of segment files seg-<16 digits>.log, appended
// to in order, and a cursor file holding how far the oldest segment has
// been forwarded. Each record is
//
//	length  uint32 big endian  (of the payload)
//	crc     uint32 big endian  CRC-32C of time and payload
//	time    int64  big endian  event time, unix milliseconds
//	payload length bytes
//
// # Crash safety and the fsync policy
//
// Each record is written with one write(2) and then fsync(2)ed before
// Append returns. The write alone survives kill -9 (the page cache
// belongs to the kernel); the fsync makes it survive the power cut this
// agent exists to report. The cost is one fsync per reading that could not
// be published, a few per minute per UPS: nothing next to losing the
// record of an outage. The cursor is replaced atomically (write a
// temporary file, fsync, rename), so after a crash the forwarder resumes
// at the last acknowledged record or slightly before it: records are
// delivered at least once (upswatch stores one reading per unit and event
// time, so a repeat changes nothing).
//
// On Open a record cut short at the end of the newest segment (a write
// torn by a crash) is truncated away. Any other damage, a CRC mismatch or
// an impossible length, marks the segment corrupt: it is reported
// (logged, counted) and renamed to *.corrupt for inspection, and the rest
// of the buffer is used. Nothing in a buffer file can crash the agent.
//
// # Bounds
//
// MaxBytes bounds the segments' total size and MaxAge the records' age.
// Over either bound the oldest records go first: whole segments (each at
// most a quarter of MaxBytes, so a drop loses a bounded slice) for size,
// records past MaxAge when the forwarder reaches them or their segment
// ages out. Every dropped record is counted and logged.
package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	headerSize = 16
	// MaxRecord bounds one payload; a larger length in a file is damage.
	MaxRecord  = 1 << 20
	cursorFile = "cursor"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrTooLarge is returned by Append for a payload over MaxRecord.
var ErrTooLarge = errors.New("buffer: record too large")

// ErrLocked is returned by Open when another process has the buffer open.
var ErrLocked = errors.New("buffer: in use by another process")

// errCorrupt marks damage inside a segment.
var errCorrupt = errors.New("corrupt record")

// Options of Open.
type Options struct {
	Dir      string
	MaxBytes int64         // total size of the segments; default 64 MiB
	MaxAge   time.Duration // default 7 days
	// SegmentBytes is when a segment is closed and a new one started;
	// default and maximum MaxBytes/4.
	SegmentBytes int64
	Logger       *slog.Logger
	Now          func() time.Time // for tests; time.Now by default
}

// Record is one buffered reading.
type Record struct {
	Time time.Time // event time, millisecond precision
	Data []byte
}

// Cursor is a position in the buffer, returned by Peek and given to Ack.
type Cursor struct {
	seq uint64
	off int64
}

// Stats are the buffer's counters.
type Stats struct {
	Records        int   // waiting to be forwarded
	Bytes          int64 // size of the segment files
	DroppedFull    int64 // records dropped because MaxBytes was reached
	DroppedAge     int64 // records dropped because older than MaxAge
	CorruptFiles   int64 // segments found damaged and set aside
	TruncatedTails int64 // torn records cut off at the end of the newest segment
}

type segment struct {
	seq     uint64
	size    int64
	records int       // records in the file
	newest  time.Time // newest event time in the file
}

// Buffer is a directory-backed FIFO of records. It is safe for
// concurrent use.
type Buffer struct {
	opts Options
	log  *slog.Logger
	lock *os.File

	mu     sync.Mutex
	segs   []*segment // oldest first; the last is open for appends
	active *os.File
	head   Cursor // next record to forward: in segs[0]
	headN  int    // records of segs[0] before head
	stats  Stats
}

// Open opens (creating) the buffer in opts.Dir, checking every segment.
func Open(opts Options) (*Buffer, error) {
	if opts.Dir == "" {
		return nil, errors.New("buffer: no directory")
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 64 << 20
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 7 * 24 * time.Hour
	}
	if opts.SegmentBytes <= 0 || opts.SegmentBytes > opts.MaxBytes/4 {
		opts.SegmentBytes = opts.MaxBytes / 4
	}
	if opts.SegmentBytes < headerSize+1 {
		opts.SegmentBytes = headerSize + 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	b := &Buffer{opts: opts, log: opts.Logger.With("buffer", opts.Dir), lock: lock}
	if err := b.load(); err != nil {
		lock.Close()
		return nil, err
	}
	return b, nil
}

func (b *Buffer) segPath(seq uint64) string {
	return filepath.Join(b.opts.Dir, fmt.Sprintf("seg-%016d.log", seq))
}

func (b *Buffer) load() error {
	entries, err := os.ReadDir(b.opts.Dir)
	if err != nil {
		return fmt.Errorf("buffer: %w", err)
	}
	var seqs []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "seg-") || !strings.HasSuffix(name, ".log") {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, "seg-"), ".log"), 10, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for i, seq := range seqs {
		last := i == len(seqs)-1
		seg, err := b.scan(seq, last)
		if err != nil {
			b.quarantine(seq, err)
			continue
		}
		if seg.records == 0 {
			// An empty segment (the agent stopped before writing to it).
			_ = os.Remove(b.segPath(seq))
			continue
		}
		b.segs = append(b.segs, seg)
	}
	// The cursor: where forwarding stopped.
	if c, ok := b.readCursor(); ok && len(b.segs) > 0 {
		for len(b.segs) > 1 && b.segs[0].seq < c.seq {
			b.removeOldest()
		}
		if b.segs[0].seq == c.seq && c.off <= b.segs[0].size {
			n, err := b.countTo(b.segs[0], c.off)
			if err == nil {
				b.head, b.headN = c, n
				b.stats.Records -= n
			}
		}
	}
	if len(b.segs) > 0 {
		if b.head.seq != b.segs[0].seq {
			b.head, b.headN = Cursor{seq: b.segs[0].seq}, 0
		}
	}
	next := uint64(1)
	if len(b.segs) > 0 {
		next = b.segs[len(b.segs)-1].seq + 1
	}
	// Appends always go to a fresh segment: the scanned ones are never
	// reopened for writing, so a damaged tail cannot be built upon.
	return b.startSegment(next)
}

// scan reads a whole segment, checking every record. A record cut short
// at the end of the newest segment is truncated; other damage is an
// error.
func (b *Buffer) scan(seq uint64, newest bool) (*segment, error) {
	path := b.segPath(seq)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	seg := &segment{seq: seq}
	r := &offsetReader{r: f}
	for {
		rec, err := readRecord(r)
		if err == io.EOF {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) && newest {
			b.log.Warn("buffer: cutting a torn record off the newest segment", "segment", filepath.Base(path), "offset", seg.size, "size", fi.Size())
			if err := os.Truncate(path, seg.size); err != nil {
				return nil, fmt.Errorf("truncate torn tail: %w", err)
			}
			b.stats.TruncatedTails++
			break
		}
		if err != nil {
			return nil, fmt.Errorf("at offset %d: %w", seg.size, err)
		}
		seg.records++
		seg.size = r.off
		if rec.Time.After(seg.newest) {
			seg.newest = rec.Time
		}
	}
	b.stats.Records += seg.records
	b.stats.Bytes += seg.size
	return seg, nil
}

// quarantine sets a damaged segment aside and reports it.
func (b *Buffer) quarantine(seq uint64, cause error) {
	path := b.segPath(seq)
	b.stats.CorruptFiles++
	b.log.Error("buffer: corrupt segment set aside; its readings are not forwarded", "segment", filepath.Base(path), "err", cause)
	if err := os.Rename(path, path+".corrupt"); err != nil {
		b.log.Error("buffer: cannot rename corrupt segment; removing it", "segment", filepath.Base(path), "err", err)
		_ = os.Remove(path)
	}
}

func (b *Buffer) countTo(seg *segment, off int64) (int, error) {
	f, err := os.Open(b.segPath(seg.seq))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := &offsetReader{r: io.LimitReader(f, off)}
	n := 0
	for r.off < off {
		if _, err := readRecord(r); err != nil {
			return 0, err
		}
		n++
	}
	if r.off != off {
		return 0, errCorrupt
	}
	return n, nil
}

func (b *Buffer) startSegment(seq uint64) error {
	f, err := os.OpenFile(b.segPath(seq), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("buffer: new segment: %w", err)
	}
	if err := syncDir(b.opts.Dir); err != nil {
		f.Close()
		return fmt.Errorf("buffer: new segment: %w", err)
	}
	if b.active != nil {
		b.active.Close()
	}
	b.active = f
	b.segs = append(b.segs, &segment{seq: seq})
	if len(b.segs) == 1 {
		b.head, b.headN = Cursor{seq: seq}, 0
	}
	return nil
}

// Append stores one record durably (see the package doc), dropping the
// oldest records when the buffer is full.
func (b *Buffer) Append(t time.Time, data []byte) error {
	if len(data) > MaxRecord {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(data))
	}
	rec := encode(t, data)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.active == nil {
		return errors.New("buffer: closed")
	}
	b.expireLocked()
	cur := b.segs[len(b.segs)-1]
	if cur.size > 0 && cur.size+int64(len(rec)) > b.opts.SegmentBytes {
		if err := b.active.Sync(); err != nil {
			return fmt.Errorf("buffer: sync: %w", err)
		}
		if err := b.startSegment(cur.seq + 1); err != nil {
			return err
		}
		cur = b.segs[len(b.segs)-1]
	}
	for b.stats.Bytes+int64(len(rec)) > b.opts.MaxBytes && len(b.segs) > 1 {
		n := b.segs[0].records - b.headN
		b.stats.DroppedFull += int64(n)
		b.log.Warn("buffer: full, dropping the oldest readings", "dropped", n, "dropped_total", b.stats.DroppedFull)
		b.removeOldest()
	}
	if _, err := b.active.Write(rec); err != nil {
		// A partial write leaves a torn record: start a new segment so
		// later records are not appended behind it.
		_ = b.startSegment(cur.seq + 1)
		return fmt.Errorf("buffer: write: %w", err)
	}
	if err := b.active.Sync(); err != nil {
		return fmt.Errorf("buffer: sync: %w", err)
	}
	cur.size += int64(len(rec))
	cur.records++
	if t.After(cur.newest) {
		cur.newest = t
	}
	b.stats.Records++
	b.stats.Bytes += int64(len(rec))
	return nil
}

// removeOldest deletes segs[0] (never the active one) and moves the head
// to the next segment.
func (b *Buffer) removeOldest() {
	seg := b.segs[0]
	b.stats.Records -= seg.records - b.headN
	b.stats.Bytes -= seg.size
	if err := os.Remove(b.segPath(seg.seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
		b.log.Error("buffer: remove segment", "segment", filepath.Base(b.segPath(seg.seq)), "err", err)
	}
	b.segs = b.segs[1:]
	b.head, b.headN = Cursor{seq: b.segs[0].seq}, 0
}

// expireLocked drops whole segments whose newest record is past MaxAge.
func (b *Buffer) expireLocked() {
	limit := b.opts.Now().Add(-b.opts.MaxAge)
	for len(b.segs) > 1 && b.segs[0].newest.Before(limit) {
		n := b.segs[0].records - b.headN
		b.stats.DroppedAge += int64(n)
		b.log.Warn("buffer: dropping readings older than max_age", "dropped", n, "max_age", b.opts.MaxAge)
		b.removeOldest()
	}
}

// Peek returns up to max of the oldest records (and at most maxBytes of
// payload, though always at least one), with the cursor to Ack once they
// are forwarded. Records past MaxAge at the front are dropped and counted
// on the way. A segment found damaged now is set aside and skipped.
func (b *Buffer) Peek(max int, maxBytes int) ([]Record, Cursor, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.active == nil {
		return nil, Cursor{}, errors.New("buffer: closed")
	}
	b.expireLocked()
	limit := b.opts.Now().Add(-b.opts.MaxAge)
	// Consume expired records at the front, one by one.
	for {
		for len(b.segs) > 1 && b.head.off >= b.segs[0].size {
			b.removeOldest()
		}
		seg := b.segs[0]
		if b.head.off >= seg.size {
			break
		}
		recs, _, err := b.readFrom(seg, b.head.off, 1, 1)
		if err != nil {
			if len(b.segs) == 1 {
				return nil, b.head, fmt.Errorf("buffer: read active segment: %w", err)
			}
			b.dropDamaged(0, err)
			continue
		}
		if !recs[0].Time.Before(limit) {
			break
		}
		b.stats.DroppedAge++
		b.stats.Records--
		b.headN++
		b.head.off += int64(headerSize + len(recs[0].Data))
	}
	var out []Record
	size := 0
	pos := b.head
	for i := 0; i < len(b.segs) && len(out) < max && (size < maxBytes || len(out) == 0); i++ {
		seg := b.segs[i]
		if seg.seq > pos.seq {
			pos = Cursor{seq: seg.seq}
		}
		if pos.off >= seg.size {
			continue
		}
		recs, next, err := b.readFrom(seg, pos.off, max-len(out), maxBytes-size)
		if err != nil {
			if i == len(b.segs)-1 {
				return out, pos, fmt.Errorf("buffer: read active segment: %w", err)
			}
			if i == 0 {
				pos = Cursor{seq: b.segs[1].seq}
			}
			b.dropDamaged(i, err)
			i--
			continue
		}
		out = append(out, recs...)
		for _, r := range recs {
			size += len(r.Data)
		}
		pos.off = next
	}
	return out, pos, nil
}

// dropDamaged sets segs[i] (not the active one) aside as corrupt.
func (b *Buffer) dropDamaged(i int, cause error) {
	seg := b.segs[i]
	forwarded := 0
	if i == 0 {
		forwarded = b.headN
	}
	b.stats.Records -= seg.records - forwarded
	b.stats.Bytes -= seg.size
	b.quarantine(seg.seq, cause)
	b.segs = slices.Delete(b.segs, i, i+1)
	if i == 0 {
		b.head, b.headN = Cursor{seq: b.segs[0].seq}, 0
	}
}

func (b *Buffer) readFrom(seg *segment, off int64, max, maxBytes int) ([]Record, int64, error) {
	f, err := os.Open(b.segPath(seg.seq))
	if err != nil {
		return nil, off, err
	}
	defer f.Close()
	r := &offsetReader{r: io.NewSectionReader(f, off, seg.size-off), off: off}
	var out []Record
	size := 0
	for r.off < seg.size && len(out) < max && (size < maxBytes || len(out) == 0) {
		rec, err := readRecord(r)
		if err != nil {
			if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("%w: file shorter than its records (%v)", errCorrupt, err)
			}
			return nil, off, err
		}
		out = append(out, rec)
		size += len(rec.Data)
	}
	return out, r.off, nil
}

// Ack marks everything before c forwarded: fully forwarded segments are
// deleted and the cursor is saved.
func (b *Buffer) Ack(c Cursor) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.active == nil {
		return errors.New("buffer: closed")
	}
	if len(b.segs) == 0 || c.seq < b.head.seq || (c.seq == b.head.seq && c.off <= b.head.off) {
		return nil // already forwarded, or dropped meanwhile
	}
	for len(b.segs) > 1 && b.segs[0].seq < c.seq {
		b.removeOldest()
	}
	seg := b.segs[0]
	if seg.seq != c.seq {
		return nil
	}
	n, err := b.countBetween(seg, b.head.off, c.off)
	if err != nil {
		return fmt.Errorf("buffer: ack: %w", err)
	}
	b.headN += n
	b.stats.Records -= n
	b.head = c
	if len(b.segs) > 1 && c.off >= seg.size {
		b.removeOldest()
	}
	return b.writeCursor()
}

func (b *Buffer) countBetween(seg *segment, from, to int64) (int, error) {
	f, err := os.Open(b.segPath(seg.seq))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := &offsetReader{r: io.NewSectionReader(f, from, to-from), off: from}
	n := 0
	for r.off < to {
		if _, err := readRecord(r); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (b *Buffer) readCursor() (Cursor, bool) {
	data, err := os.ReadFile(filepath.Join(b.opts.Dir, cursorFile))
	if err != nil || len(data) != 20 {
		return Cursor{}, false
	}
	if crc32.Checksum(data[:16], castagnoli) != binary.BigEndian.Uint32(data[16:]) {
		b.log.Warn("buffer: cursor file damaged; forwarding from the oldest segment")
		return Cursor{}, false
	}
	return Cursor{seq: binary.BigEndian.Uint64(data), off: int64(binary.BigEndian.Uint64(data[8:]))}, true
}

func (b *Buffer) writeCursor() error {
	var data [20]byte
	binary.BigEndian.PutUint64(data[:], b.head.seq)
	binary.BigEndian.PutUint64(data[8:], uint64(b.head.off))
	binary.BigEndian.PutUint32(data[16:], crc32.Checksum(data[:16], castagnoli))
	path := filepath.Join(b.opts.Dir, cursorFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("buffer: cursor: %w", err)
	}
	_, err = f.Write(data[:])
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("buffer: cursor: %w", err)
	}
	return nil
}

// Len is the number of records waiting.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats.Records
}

// Stats returns the counters.
func (b *Buffer) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// Close closes the active segment; the buffer is not usable afterwards.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.active == nil {
		return nil
	}
	err := b.active.Close()
	b.active = nil
	b.lock.Close() // releases the lock
	return err
}

func encode(t time.Time, data []byte) []byte {
	rec := make([]byte, headerSize+len(data))
	binary.BigEndian.PutUint32(rec, uint32(len(data)))
	binary.BigEndian.PutUint64(rec[8:], uint64(t.UnixMilli()))
	copy(rec[headerSize:], data)
	binary.BigEndian.PutUint32(rec[4:], crc32.Checksum(rec[8:], castagnoli))
	return rec
}

// readRecord reads one record: io.EOF at a clean end, io.ErrUnexpectedEOF
// for a record cut short, errCorrupt for damage. It never panics
// (fuzzed) and never allocates more than MaxRecord.
func readRecord(r io.Reader) (Record, error) {
	var h [headerSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Record{}, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > MaxRecord {
		return Record{}, fmt.Errorf("%w: length %d", errCorrupt, n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Record{}, err
	}
	crc := crc32.Update(crc32.Checksum(h[8:], castagnoli), castagnoli, data)
	if crc != binary.BigEndian.Uint32(h[4:]) {
		return Record{}, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	return Record{Time: time.UnixMilli(int64(binary.BigEndian.Uint64(h[8:]))), Data: data}, nil
}

type offsetReader struct {
	r   io.Reader
	off int64
}

func (o *offsetReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.off += int64(n)
	return n, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
