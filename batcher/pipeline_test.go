package batcher

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// chanSource sends what arrives on in, one chunk per receive, until in is
// closed.
type chanSource struct {
	in  chan []Record
	err error // returned at the end
}

func (s *chanSource) Run(ctx context.Context, out chan<- []Record) error {
	for {
		select {
		case recs, ok := <-s.in:
			if !ok {
				return s.err
			}
			select {
			case out <- recs:
			case <-ctx.Done():
				return ctx.Err()
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sliceSource sends records, n per chunk, then ends.
type sliceSource struct {
	recs []Record
	n    int
}

func (s *sliceSource) Run(ctx context.Context, out chan<- []Record) error {
	for len(s.recs) > 0 {
		k := min(s.n, len(s.recs))
		select {
		case out <- s.recs[:k]:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.recs = s.recs[k:]
	}
	return nil
}

// sent is one batch as a sink saw it.
type sent struct {
	seq     int64
	reason  Reason
	records []string
	at      time.Duration // since the test began
	attempt int
	first   Pos
}

// fakeSink records batches; deliver, when set, decides each attempt.
type fakeSink struct {
	start   time.Time
	deliver func(ctx context.Context, b *Batch) error

	mu      sync.Mutex
	batches []sent
	settled []int64
}

func newSink() *fakeSink { return &fakeSink{start: time.Now()} }

func (s *fakeSink) Deliver(ctx context.Context, b *Batch) error {
	if s.deliver != nil {
		if err := s.deliver(ctx, b); err != nil {
			return err
		}
	}
	recs := make([]string, b.Len())
	for i := range recs {
		recs[i] = string(b.Record(i))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, sent{b.Seq, b.Reason, recs, time.Since(s.start), b.Attempt, b.First})
	return nil
}

func (s *fakeSink) Settled(seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settled = append(s.settled, seq)
}

func (s *fakeSink) got() []sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches)
}

// advance moves a synctest bubble's fake clock on by d: it returns once
// every other goroutine in the bubble is blocked and d has passed.
func advance(d time.Duration) { <-time.NewTimer(d).C }

func recs(ss ...string) []Record {
	r := make([]Record, len(ss))
	for i, s := range ss {
		r[i] = Record{Data: []byte(s)}
	}
	return r
}

func numbered(n int) []Record {
	r := make([]Record, n)
	for i := range r {
		r[i] = Record{Data: fmt.Appendf(nil, "r%d", i)}
	}
	return r
}

// blocks joins records into blocks, as a stream source sends them: the
// records of each block end with '\n', and a block holds at most n.
func blocks(ss []string, n int) []Record {
	var out []Record
	for len(ss) > 0 {
		k := min(n, len(ss))
		var data []byte
		for _, s := range ss[:k] {
			data = append(append(data, s...), '\n')
		}
		out = append(out, Record{Data: data, Block: true})
		ss = ss[k:]
	}
	return out
}

func cfg(c Config) Config {
	c.Delim = '\n'
	return c
}

// runAsync runs p in a goroutine; its stats come on the channel returned,
// and an error fails t.
func runAsync(t *testing.T, p *Pipeline) <-chan Stats {
	done := make(chan Stats, 1)
	go func() {
		st, err := p.Run(context.Background())
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	return done
}

func TestLingerFlushesOldestRecordOnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &chanSource{in: make(chan []Record)}
		sink := newSink()
		p := &Pipeline{Source: src, Sink: sink, Config: cfg(Config{MaxRecords: 10, Linger: 5 * time.Second})}
		done := runAsync(t, p)
		src.in <- recs("a")
		advance(3 * time.Second) // fake time: the second record is younger
		src.in <- recs("b")
		synctest.Wait()
		if got := sink.got(); len(got) != 0 {
			t.Fatalf("flushed before the linger: %+v", got)
		}
		advance(2 * time.Second)
		synctest.Wait()
		got := sink.got()
		if len(got) != 1 || got[0].at != 5*time.Second || got[0].reason != ReasonLinger ||
			!slices.Equal(got[0].records, []string{"a", "b"}) {
			t.Fatalf("want [a b] flushed for linger at 5s, got %+v", got)
		}
		// The next batch's linger starts with its own first record.
		advance(time.Second)
		src.in <- recs("c")
		advance(4 * time.Second)
		synctest.Wait()
		if n := len(sink.got()); n != 1 {
			t.Fatalf("second batch flushed early: %d batches", n)
		}
		advance(time.Second)
		synctest.Wait()
		if got := sink.got(); len(got) != 2 || got[1].at != 11*time.Second {
			t.Fatalf("second batch: %+v", got)
		}
		close(src.in)
		st := <-done
		if st.Read != 3 || st.Delivered != 3 || st.Reasons["linger"] != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestEOFFlushesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := newSink()
		p := &Pipeline{Source: &sliceSource{recs: recs("a", "b"), n: 1}, Sink: sink,
			Config: cfg(Config{MaxRecords: 10, Linger: time.Hour})}
		st, err := p.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := sink.got()
		if len(got) != 1 || got[0].at != 0 || got[0].reason != ReasonEOF {
			t.Fatalf("want one batch at once for eof, got %+v", got)
		}
		if st.Delivered != 2 || st.InFlight != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestSizeAndBytesTriggers(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		in      []string
		want    [][]string
		reasons []Reason
	}{
		{"count", Config{MaxRecords: 2}, []string{"a", "b", "c", "d", "e"},
			[][]string{{"a", "b"}, {"c", "d"}, {"e"}}, []Reason{ReasonSize, ReasonSize, ReasonEOF}},
		// "aaa\n" + "bbb\n" = 8 bytes fit; a third record would pass 10.
		{"bytes", Config{MaxBytes: 10}, []string{"aaa", "bbb", "ccc"},
			[][]string{{"aaa", "bbb"}, {"ccc"}}, []Reason{ReasonBytes, ReasonEOF}},
		{"bytes exactly full", Config{MaxBytes: 8}, []string{"aaa", "bbb", "c"},
			[][]string{{"aaa", "bbb"}, {"c"}}, []Reason{ReasonBytes, ReasonEOF}},
		{"record over max bytes goes alone", Config{MaxBytes: 4}, []string{"a", "toolong", "b"},
			[][]string{{"a"}, {"toolong"}, {"b"}}, []Reason{ReasonBytes, ReasonBytes, ReasonEOF}},
		{"empty records count", Config{MaxRecords: 2}, []string{"", "", ""},
			[][]string{{"", ""}, {""}}, []Reason{ReasonSize, ReasonEOF}},
		{"per-record overhead", Config{MaxBytes: 20, PerRecordOverhead: 8}, []string{"a", "b", "c"},
			[][]string{{"a", "b"}, {"c"}}, []Reason{ReasonBytes, ReasonEOF}},
		{"max records 1", Config{MaxRecords: 1}, []string{"a", "b"},
			[][]string{{"a"}, {"b"}}, []Reason{ReasonSize, ReasonSize}},
	}
	for _, tt := range tests {
		for _, in := range []struct {
			name string
			recs []Record
		}{{"records", recs(tt.in...)}, {"block", blocks(tt.in, len(tt.in))}, {"blocks of 2", blocks(tt.in, 2)}} {
			t.Run(tt.name+"/"+in.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					sink := newSink()
					p := &Pipeline{Source: &sliceSource{recs: in.recs, n: 2}, Sink: sink, Config: cfg(tt.cfg)}
					if _, err := p.Run(context.Background()); err != nil {
						t.Fatal(err)
					}
					got := sink.got()
					if len(got) != len(tt.want) {
						t.Fatalf("got %d batches %+v, want %v", len(got), got, tt.want)
					}
					for i, b := range got {
						if !slices.Equal(b.records, tt.want[i]) || b.reason != tt.reasons[i] || b.seq != int64(i+1) {
							t.Errorf("batch %d: got %v %v seq %d, want %v %v", i, b.records, b.reason, b.seq, tt.want[i], tt.reasons[i])
						}
					}
				})
			})
		}
	}
}

// FuzzBlocksBatchLikeRecords checks that records sent in blocks make the
// same batches, positions and counts as the same records sent one by one,
// wherever the blocks are cut and whatever the limits.
func FuzzBlocksBatchLikeRecords(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc\ndddd\n"), uint64(5), uint8(2), uint16(0), uint8(0))
	f.Add([]byte("one\ntwo\nthree\nfour\nfive\n"), uint64(0xff), uint8(0), uint16(9), uint8(3))
	f.Add([]byte("\n\n\n\n\n\n"), uint64(1), uint8(4), uint16(3), uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, cuts uint64, maxRecords uint8, maxBytes uint16, over uint8) {
		if len(in) == 0 || in[len(in)-1] != '\n' {
			in = append(in, '\n')
		}
		lines := strings.SplitAfter(string(in), "\n")
		lines = lines[:len(lines)-1] // after the last delimiter
		var one, blocked []Record
		var block []byte
		for i, l := range lines {
			one = append(one, Record{Data: []byte(strings.TrimSuffix(l, "\n"))})
			block = append(block, l...)
			if cuts>>(i%64)&1 == 1 || i == len(lines)-1 {
				blocked = append(blocked, Record{Data: block, Block: true})
				block = nil
			}
		}
		c := cfg(Config{MaxRecords: int(maxRecords), MaxBytes: int(maxBytes), PerRecordOverhead: int(over % 16)})
		run := func(rs []Record) ([]sent, Stats) {
			var got []sent
			var st Stats
			synctest.Test(t, func(t *testing.T) {
				sink := newSink()
				p := &Pipeline{Source: &sliceSource{recs: rs, n: 3}, Sink: sink, Config: c}
				var err error
				if st, err = p.Run(context.Background()); err != nil {
					t.Fatal(err)
				}
				got = sink.got()
			})
			for i := range got {
				got[i].at = 0
			}
			return got, st
		}
		want, wantStats := run(one)
		got, gotStats := run(blocked)
		if !slices.EqualFunc(got, want, func(a, b sent) bool {
			return a.seq == b.seq && a.reason == b.reason && a.first == b.first && slices.Equal(a.records, b.records)
		}) {
			t.Fatalf("blocks made\n%+v\nrecords made\n%+v", got, want)
		}
		gotStats.Elapsed, wantStats.Elapsed = 0, 0
		if !reflect.DeepEqual(gotStats, wantStats) {
			t.Fatalf("stats %+v, want %+v", gotStats, wantStats)
		}
	})
}

// TestLingerRestartsAfterSizeFlush: a batch flushed for its size takes its
// linger with it; the next batch's first record waits a full linger of
// its own, not what was left of the last one.
func TestLingerRestartsAfterSizeFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &chanSource{in: make(chan []Record)}
		sink := newSink()
		p := &Pipeline{Source: src, Sink: sink, Config: cfg(Config{MaxRecords: 2, Linger: time.Second})}
		go p.Run(context.Background())
		src.in <- recs("a", "b") // flushed for size at 0
		advance(500 * time.Millisecond)
		src.in <- recs("c") // due at 1.5s
		advance(10 * time.Second)
		synctest.Wait()
		got := sink.got()
		if len(got) != 2 || got[0].reason != ReasonSize || got[1].reason != ReasonLinger || got[1].at != 1500*time.Millisecond {
			t.Fatalf("%+v", got)
		}
		close(src.in)
	})
}

func TestStopFlushesAndDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &chanSource{in: make(chan []Record)}
		release := make(chan struct{})
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error {
			<-release // a slow sink: batches queue up behind it
			return nil
		}
		stop := make(chan struct{})
		p := &Pipeline{Source: src, Sink: sink, Stop: stop, Config: cfg(Config{MaxRecords: 2, Linger: time.Hour})}
		done := make(chan Stats)
		go func() {
			st, _ := p.Run(context.Background())
			done <- st
		}()
		src.in <- recs("a", "b", "c", "d", "e")
		synctest.Wait()
		close(stop)
		close(release)
		st := <-done
		if st.Read != 5 || st.Delivered != 5 || st.Undelivered != 0 {
			t.Fatalf("stats %+v", st)
		}
		got := sink.got()
		if last := got[len(got)-1]; last.reason != ReasonSignal || !slices.Equal(last.records, []string{"e"}) {
			t.Fatalf("last batch %+v", last)
		}
	})
}

func TestFlushChannel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &chanSource{in: make(chan []Record)}
		flush := make(chan struct{})
		sink := newSink()
		p := &Pipeline{Source: src, Sink: sink, Flush: flush, Config: cfg(Config{MaxRecords: 100, Linger: time.Hour})}
		go p.Run(context.Background())
		src.in <- recs("a")
		synctest.Wait() // the record is in the open batch
		flush <- struct{}{}
		synctest.Wait()
		if got := sink.got(); len(got) != 1 || got[0].reason != ReasonFlush {
			t.Fatalf("%+v", got)
		}
		flush <- struct{}{} // nothing open: no empty batch
		close(src.in)
		synctest.Wait()
		if got := sink.got(); len(got) != 1 {
			t.Fatalf("empty batch flushed: %+v", got)
		}
	})
}

func TestBackpressurePausesReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &chanSource{in: make(chan []Record)}
		release := make(chan struct{})
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error {
			<-release
			return nil
		}
		p := &Pipeline{Source: src, Sink: sink, Config: cfg(Config{MaxRecords: 1, Parallel: 2})}
		done := make(chan struct{})
		go func() {
			p.Run(context.Background())
			close(done)
		}()
		// 2 in flight, 1 queued, 1 being handed over by the aggregator, and
		// the fifth in the source's hands: the sixth must wait.
		for i := range 5 {
			src.in <- recs(fmt.Sprint(i))
		}
		synctest.Wait()
		select {
		case src.in <- recs("x"):
			t.Fatal("source was not held back by a stalled sink")
		default:
		}
		if st := p.Stats(); st.InFlight != 4 || st.Read != 4 {
			t.Fatalf("stats while stalled: %+v", st)
		}
		close(release)
		src.in <- recs("x")
		close(src.in)
		<-done
		if st := p.Stats(); st.Delivered != 6 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := newSink()
		var attempts []time.Duration
		sink.deliver = func(ctx context.Context, b *Batch) error {
			attempts = append(attempts, time.Since(sink.start))
			if b.Attempt < 4 {
				return errors.New("flaky")
			}
			return nil
		}
		p := &Pipeline{Source: &sliceSource{recs: recs("a"), n: 1}, Sink: sink,
			Config: cfg(Config{Retries: 5, Backoff: time.Second, MaxBackoff: 3 * time.Second})}
		st, err := p.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Delivered != 1 || st.Retries != 3 || len(attempts) != 4 {
			t.Fatalf("stats %+v attempts %v", st, attempts)
		}
		// Full jitter: retry n waits at most min(max, backoff×2^(n-1)).
		for i, limit := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second} {
			if gap := attempts[i+1] - attempts[i]; gap > limit {
				t.Errorf("retry %d waited %v, more than %v", i+1, gap, limit)
			}
		}
	})
}

func TestRetryAfterHintIsHonouredAndCapped(t *testing.T) {
	for _, tt := range []struct{ hint, max, want time.Duration }{
		{7 * time.Second, time.Minute, 7 * time.Second},
		{time.Hour, 10 * time.Second, 10 * time.Second},
	} {
		synctest.Test(t, func(t *testing.T) {
			sink := newSink()
			sink.deliver = func(ctx context.Context, b *Batch) error {
				if b.Attempt == 1 {
					return RetryAfter(errors.New("429"), tt.hint)
				}
				return nil
			}
			p := &Pipeline{Source: &sliceSource{recs: recs("a"), n: 1}, Sink: sink,
				Config: cfg(Config{Retries: 1, Backoff: time.Millisecond, MaxBackoff: tt.max})}
			if _, err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := sink.got(); len(got) != 1 || got[0].at != tt.want {
				t.Fatalf("hint %v max %v: delivered at %+v, want %v", tt.hint, tt.max, got, tt.want)
			}
		})
	}
}

func TestPermanentErrorIsNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := newSink()
		calls := 0
		sink.deliver = func(ctx context.Context, b *Batch) error {
			calls++
			return Permanent(errors.New("400 bad request"))
		}
		p := &Pipeline{Source: &sliceSource{recs: recs("a", "b"), n: 2}, Sink: sink,
			Config: cfg(Config{Retries: 5})}
		st, err := p.Run(context.Background())
		if calls != 1 {
			t.Fatalf("%d attempts at a permanent failure", calls)
		}
		var de *DeliveryError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), "batch 1 (records 1-2, byte offset 0): 400 bad request") {
			t.Fatalf("error %v", err)
		}
		if st.Undelivered != 2 || st.Delivered != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// failingDL is a dead letter that keeps what it is given.
type memDL struct {
	mu      sync.Mutex
	records []string
	reasons []string
	fail    bool
}

func (d *memDL) Write(ctx context.Context, b *Batch, reason error) error {
	if d.fail {
		return errors.New("disk full")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range b.Len() {
		d.records = append(d.records, string(b.Record(i)))
	}
	d.reasons = append(d.reasons, reason.Error())
	return nil
}

func TestFailureStopsReadingAndCountsTheRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error {
			if b.Seq == 3 {
				return errors.New("boom")
			}
			return nil
		}
		p := &Pipeline{Source: &sliceSource{recs: numbered(100), n: 1}, Sink: sink,
			Config: cfg(Config{MaxRecords: 10})}
		st, err := p.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "batch 3 (records 21-30") {
			t.Fatalf("error %v", err)
		}
		if st.Delivered+st.Undelivered != st.Read || st.Read == 100 || st.Delivered != 20 {
			t.Fatalf("stats %+v: reading went on after the failure, or counts do not add up", st)
		}
		if len(sink.settled) != int(st.Batches) {
			t.Fatalf("settled %v of %d batches", sink.settled, st.Batches)
		}
	})
}

func TestDeadLetterKeepsGoing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error {
			if b.Seq%3 == 0 {
				return errors.New("boom")
			}
			return nil
		}
		dl := &memDL{}
		p := &Pipeline{Source: &sliceSource{recs: numbered(100), n: 7}, Sink: sink,
			Config: cfg(Config{MaxRecords: 10, Retries: 2, DeadLetter: dl, Parallel: 3})}
		st, err := p.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Read != 100 || st.Delivered != 70 || st.DeadLettered != 30 || st.Undelivered != 0 || st.Retries != 6 {
			t.Fatalf("stats %+v", st)
		}
		var all []string
		for _, b := range sink.got() {
			all = append(all, b.records...)
		}
		all = append(all, dl.records...)
		slices.Sort(all)
		want := make([]string, 100)
		for i := range want {
			want[i] = fmt.Sprintf("r%d", i)
		}
		slices.Sort(want)
		if !slices.Equal(all, want) {
			t.Fatalf("delivered ∪ dead-lettered != input")
		}
	})
}

func TestDeadLetterFailureFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error { return Permanent(errors.New("no")) }
		p := &Pipeline{Source: &sliceSource{recs: recs("a"), n: 1}, Sink: sink,
			Config: cfg(Config{DeadLetter: &memDL{fail: true}})}
		st, err := p.Run(context.Background())
		if err == nil || st.Undelivered != 1 {
			t.Fatalf("err %v stats %+v", err, st)
		}
	})
}

func TestRejectedRecordsAloneAreDeadLettered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error {
			for i := range b.Len() {
				if string(b.Record(i)) == "bad" {
					return &RejectError{Records: []Rejected{{Index: i, Err: errors.New("not JSON")}}}
				}
			}
			return nil
		}
		acks := &ackSource{sliceSource: sliceSource{recs: recs("a", "bad", "c"), n: 3}}
		dl := &memDL{}
		p := &Pipeline{Source: acks, Sink: sink, Config: cfg(Config{DeadLetter: dl})}
		st, err := p.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Delivered != 2 || st.DeadLettered != 1 || !slices.Equal(dl.records, []string{"bad"}) {
			t.Fatalf("stats %+v dead letters %v", st, dl.records)
		}
		if acks.acked != 1 {
			t.Fatalf("batch acked %d times", acks.acked)
		}
	})
}

// TestRejectedAgainRetriedAlone: a sink that delivered part of a batch
// and could not deliver the rest this time gets the rest alone, with the
// records' own positions, and the batch counts as delivered in full.
func TestRejectedAgainRetriedAlone(t *testing.T) {
	for _, retries := range []int{1, 0} {
		synctest.Test(t, func(t *testing.T) {
			sink := newSink()
			var seen []string
			sink.deliver = func(ctx context.Context, b *Batch) error {
				seen = append(seen, b.String())
				if b.Attempt > 1 {
					return nil
				}
				return &RejectError{Records: []Rejected{
					{Index: 1, Err: errors.New("503"), Again: true},
					{Index: 3, Err: errors.New("503"), Again: true},
				}}
			}
			acks := &ackSource{sliceSource: sliceSource{recs: recs("a", "b", "c", "d"), n: 4}}
			dl := &memDL{}
			p := &Pipeline{Source: acks, Sink: sink, Config: cfg(Config{DeadLetter: dl, Retries: retries})}
			st, err := p.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Read != st.Delivered+st.DeadLettered+st.Undelivered {
				t.Fatalf("counts do not add up: %+v", st)
			}
			if retries == 0 {
				if st.Delivered != 2 || st.DeadLettered != 2 || !slices.Equal(dl.records, []string{"b", "d"}) {
					t.Fatalf("stats %+v dead letters %v", st, dl.records)
				}
				return
			}
			if want := []string{"batch 1 (records 1-4, byte offset 0)", "batch 1 (2 records: 2, 4)"}; !slices.Equal(seen, want) {
				t.Fatalf("attempts saw %q, want %q", seen, want)
			}
			if st.Delivered != 4 || st.DeadLettered != 0 || st.Retries != 1 || st.BatchesDone != 1 || acks.acked != 1 {
				t.Fatalf("stats %+v, acked %d", st, acks.acked)
			}
		})
	}
}

type ackSource struct {
	sliceSource
	mu    sync.Mutex
	acked int
}

func (s *ackSource) Ack(b *Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acked++
}

func TestFailedBatchIsNotAcked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error {
			if b.Seq == 2 {
				return errors.New("boom")
			}
			return nil
		}
		src := &ackSource{sliceSource: sliceSource{recs: numbered(2), n: 1}}
		p := &Pipeline{Source: src, Sink: sink, Config: cfg(Config{MaxRecords: 1})}
		p.Run(context.Background())
		if src.acked != 1 {
			t.Fatalf("acked %d batches, want 1", src.acked)
		}
	})
}

func TestTooLargeRecord(t *testing.T) {
	big := Record{Err: &TooLargeError{Size: 100, Limit: 10}}
	in := []Record{{Data: []byte("a")}, big, {Data: []byte("b")}}
	t.Run("without dead letter it stops", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := &Pipeline{Source: &sliceSource{recs: slices.Clone(in), n: 1}, Sink: newSink(), Config: cfg(Config{})}
			st, err := p.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), "record 2 at byte offset 2: record of 100 bytes") {
				t.Fatalf("error %v", err)
			}
			if st.Undelivered < 1 || st.Delivered+st.Undelivered != st.Read {
				t.Fatalf("stats %+v", st)
			}
		})
	})
	t.Run("with dead letter it reads on", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			sink := newSink()
			p := &Pipeline{Source: &sliceSource{recs: slices.Clone(in), n: 1}, Sink: sink,
				Config: cfg(Config{DeadLetter: &memDL{}, MaxRecords: 1})}
			st, err := p.Run(context.Background())
			if err == nil {
				t.Fatal("no error for an undeliverable record")
			}
			if st.Read != 3 || st.Delivered != 2 || st.Undelivered != 1 {
				t.Fatalf("stats %+v", st)
			}
			// Offsets after the skipped record account for its bytes.
			// "a\n", then 100 skipped bytes and their delimiter.
			if got := sink.got(); got[1].records[0] != "b" || got[1].first != (Pos{Record: 3, Offset: 103}) {
				t.Fatalf("%+v", got)
			}
		})
	})
}

func TestAbandonOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &chanSource{in: make(chan []Record)}
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error {
			<-ctx.Done() // hangs until abandoned
			return ctx.Err()
		}
		ctx, cancel := context.WithCancel(context.Background())
		p := &Pipeline{Source: src, Sink: sink, Config: cfg(Config{MaxRecords: 1, Parallel: 2})}
		done := make(chan struct{})
		var st Stats
		var err error
		go func() {
			st, err = p.Run(ctx)
			close(done)
		}()
		src.in <- recs("a", "b", "c")
		synctest.Wait()
		cancel()
		<-done
		if err == nil || st.Undelivered != 3 || st.Read != 3 {
			t.Fatalf("err %v stats %+v", err, st)
		}
	})
}

func TestShutdownTimeoutAbandons(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &chanSource{in: make(chan []Record)}
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error {
			<-ctx.Done()
			return ctx.Err()
		}
		stop := make(chan struct{})
		p := &Pipeline{Source: src, Sink: sink, Stop: stop,
			Config: cfg(Config{MaxRecords: 1, ShutdownTimeout: 30 * time.Second})}
		done := make(chan error)
		start := time.Now()
		go func() {
			_, err := p.Run(context.Background())
			done <- err
		}()
		src.in <- recs("a")
		synctest.Wait()
		close(stop)
		err := <-done
		if !errors.Is(err, ErrShutdownTimeout) || time.Since(start) != 30*time.Second {
			t.Fatalf("err %v after %v", err, time.Since(start))
		}
	})
}

// TestStatsWhileStarting reads the counters as Run starts, as the status
// line and the metrics do (the race detector checks it).
func TestStatsWhileStarting(t *testing.T) {
	p := &Pipeline{Source: &sliceSource{recs: recs("a", "b"), n: 1}, Sink: newSink(), Config: cfg(Config{})}
	done := make(chan Stats)
	go func() {
		st, _ := p.Run(context.Background())
		done <- st
	}()
	for {
		select {
		case st := <-done:
			if st.Delivered != 2 || p.Stats().Elapsed <= 0 {
				t.Fatalf("stats %+v", st)
			}
			return
		default:
			p.Stats()
		}
	}
}

// TestShutdownTimeoutUnderBackpressure stops a pipeline whose aggregator
// waits for room in the queue: the shutdown timeout still runs from the
// stop.
func TestShutdownTimeoutUnderBackpressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error {
			<-ctx.Done()
			return ctx.Err()
		}
		stop := make(chan struct{})
		p := &Pipeline{Source: &sliceSource{recs: recs("a", "b", "c"), n: 3}, Sink: sink, Stop: stop,
			Config: cfg(Config{MaxRecords: 1, Parallel: 1, ShutdownTimeout: 30 * time.Second})}
		type result struct {
			st  Stats
			err error
		}
		done := make(chan result)
		start := time.Now()
		go func() {
			st, err := p.Run(context.Background())
			done <- result{st, err}
		}()
		synctest.Wait() // a in the worker, b in the queue, c waiting for room
		close(stop)
		r := <-done
		if !errors.Is(r.err, ErrShutdownTimeout) || time.Since(start) != 30*time.Second {
			t.Fatalf("err %v after %v", r.err, time.Since(start))
		}
		if r.st.Read != 3 || r.st.Undelivered != 3 {
			t.Fatalf("stats %+v", r.st)
		}
	})
}

func TestSourceErrorDeliversWhatWasRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &chanSource{in: make(chan []Record, 1), err: errors.New("input/output error")}
		src.in <- recs("a")
		close(src.in)
		sink := newSink()
		p := &Pipeline{Source: src, Sink: sink, Config: cfg(Config{})}
		st, err := p.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "read, at byte offset 2 (record 2): input/output error") || st.Delivered != 1 {
			t.Fatalf("err %v stats %+v", err, st)
		}
	})
}

// A batch flushed before the one that failed is still delivered, even if
// its worker starts it only after the failure; later ones are abandoned.
func TestBatchBeforeTheFailureIsDelivered(t *testing.T) {
	sink := newSink()
	p := &Pipeline{Sink: sink, Config: cfg(Config{}).withDefaults()}
	p.failed = make(chan struct{})
	p.failSeq.Store(math.MaxInt64)
	batch := func(seq int64) *Batch {
		b := &Batch{Seq: seq, Delim: '\n'}
		b.add(&Record{Data: fmt.Appendf(nil, "r%d", seq)})
		return b
	}
	p.fail(2, "batch 2", errors.New("disk full"))
	p.fail(3, "batch 3", errors.New("disk full")) // a later failure does not move the line
	p.handle(context.Background(), batch(1))
	p.handle(context.Background(), batch(3))
	if got := sink.got(); len(got) != 1 || got[0].seq != 1 {
		t.Fatalf("delivered %+v, want batch 1 alone", got)
	}
	if st := p.Stats(); st.Delivered != 1 || st.Undelivered != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// locatingSource is a chanSource whose errors name their own place.
type locatingSource struct{ chanSource }

func (*locatingSource) LocatesErrors() bool { return true }

// A source that locates its errors gets no byte offset added to them.
func TestLocatedReadError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &locatingSource{chanSource{in: make(chan []Record, 1), err: errors.New("t[3]: broker gone")}}
		src.in <- recs("a")
		close(src.in)
		p := &Pipeline{Source: src, Sink: newSink(), Config: cfg(Config{})}
		_, err := p.Run(context.Background())
		if err == nil || err.Error() != "read: t[3]: broker gone" {
			t.Fatalf("err %v", err)
		}
	})
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{MaxRecords: -1}, {MaxBytes: -1}, {Parallel: -1}, {Retries: -1}, {Linger: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestAbandonDoesNotWaitForAStuckSink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &chanSource{in: make(chan []Record)}
		stuck := make(chan struct{})
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error {
			<-stuck // ignores ctx, like a write to a pipe nobody reads
			return nil
		}
		st, took := cancelWhileDelivering(src, sink)
		if took != abandonGrace {
			t.Errorf("returned after %v, want %v", took, abandonGrace)
		}
		if st.Undelivered != 1 || st.InFlight != 0 {
			t.Errorf("stats %+v", st)
		}
		close(stuck)
	})
}

// TestZeroBackoffRetriesAtOnce: Backoff and MaxBackoff 0 mean no wait.
func TestZeroBackoffRetriesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error {
			if b.Attempt < 4 {
				return errors.New("503")
			}
			return nil
		}
		p := &Pipeline{Source: &sliceSource{recs: recs("a"), n: 1}, Sink: sink,
			Config: cfg(Config{Retries: 3})}
		st, err := p.Run(context.Background())
		if err != nil || st.Retries != 3 {
			t.Fatalf("err %v stats %+v", err, st)
		}
		if got := sink.got(); len(got) != 1 || got[0].at != 0 || got[0].attempt != 4 {
			t.Fatalf("delivered %+v, want at once on attempt 4", got)
		}
	})
}

// abandonSink is stuck until killed, and asks for grace once abandoned.
type abandonSink struct {
	grace  time.Duration
	killed chan struct{}
}

func (s *abandonSink) Deliver(ctx context.Context, b *Batch) error {
	<-s.killed // ignores ctx, like a command trapping SIGTERM
	return errors.New("killed")
}
func (s *abandonSink) AbandonGrace(error) time.Duration { return s.grace }
func (s *abandonSink) Kill()                            { close(s.killed) }

// TestAbandonerGetsItsGrace: Run waits the grace an Abandoner asks for,
// then kills what it started, before returning.
func TestAbandonerGetsItsGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &chanSource{in: make(chan []Record)}
		sink := &abandonSink{grace: 10 * time.Second, killed: make(chan struct{})}
		st, took := cancelWhileDelivering(src, sink)
		if took != sink.grace+abandonGrace {
			t.Errorf("returned after %v, want %v", took, sink.grace+abandonGrace)
		}
		select {
		case <-sink.killed:
		default:
			t.Error("Kill was not called")
		}
		if st.Undelivered != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

// cancelWhileDelivering runs a pipeline with sink, cancels it once the
// sink holds the one record sent, and says how long Run took to return.
func cancelWhileDelivering(src *chanSource, sink Sink) (Stats, time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &Pipeline{Source: src, Sink: sink, Config: cfg(Config{MaxRecords: 1})}
	done := make(chan Stats)
	go func() {
		st, _ := p.Run(ctx)
		done <- st
	}()
	src.in <- recs("a")
	synctest.Wait()
	start := time.Now()
	cancel()
	st := <-done
	return st, time.Since(start)
}
