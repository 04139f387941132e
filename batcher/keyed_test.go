package batcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// prefixKey keys a record by what comes before its first ':'; a record
// without one has no key.
func prefixKey(dst []byte, r *Record) ([]byte, error) {
	i := bytes.IndexByte(r.Data, ':')
	if i < 0 {
		return dst, errors.New("no ':' in the record")
	}
	return append(dst, r.Data[:i]...), nil
}

// keyOf is the key of a record as prefixKey finds it.
func keyOf(s string) string { k, _, _ := strings.Cut(s, ":"); return k }

// checkKeyed checks that every batch holds one key, that each key's
// records came in order and that all of want came once.
func checkKeyed(t *testing.T, got []sent, want []string) {
	t.Helper()
	got = slices.Clone(got)
	slices.SortFunc(got, func(a, b sent) int { return int(a.seq - b.seq) }) // -j delivers in any order
	byKey := map[string][]string{}
	for _, b := range got {
		k := keyOf(b.records[0])
		for _, r := range b.records {
			if keyOf(r) != k {
				t.Fatalf("batch %d mixes keys: %q", b.seq, b.records)
			}
		}
		byKey[k] = append(byKey[k], b.records...)
	}
	wantByKey := map[string][]string{}
	for _, r := range want {
		wantByKey[keyOf(r)] = append(wantByKey[keyOf(r)], r)
	}
	for k, w := range wantByKey {
		if !slices.Equal(byKey[k], w) {
			t.Fatalf("key %s: got %q, want %q", k, byKey[k], w)
		}
	}
	if len(byKey) != len(wantByKey) {
		t.Fatalf("got keys %v, want %v", byKey, wantByKey)
	}
}

func interleaved(keys, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("k%d:%d", i%keys, i))
	}
	return out
}

func TestKeyedBatchesPerKey(t *testing.T) {
	in := interleaved(5, 53)
	for _, block := range []bool{false, true} {
		t.Run(fmt.Sprint("block=", block), func(t *testing.T) {
			var rs []Record
			if block {
				rs = blocks(in, 7)
			} else {
				rs = recs(in...)
			}
			sink := newSink()
			var mu sync.Mutex
			keys := map[int64]string{}
			sink.deliver = func(_ context.Context, b *Batch) error {
				mu.Lock()
				defer mu.Unlock()
				keys[b.Seq] = b.Key
				return nil
			}
			p := &Pipeline{Source: &sliceSource{recs: rs, n: 4}, Sink: sink,
				Config: cfg(Config{MaxRecords: 3, Key: prefixKey, Parallel: 3})}
			st, err := p.Run(context.Background())
			if err != nil || st.Delivered != 53 || st.Read != 53 {
				t.Fatalf("err %v, stats %+v", err, st)
			}
			got := sink.got()
			checkKeyed(t, got, in)
			full := 0
			for _, b := range got {
				if keys[b.seq] != keyOf(b.records[0]) {
					t.Errorf("batch %d: Key %q, records %q", b.seq, keys[b.seq], b.records)
				}
				if b.reason == ReasonSize {
					full++
				}
			}
			// 11 records for 3 keys, 10 for 2: 3+3+3 full each, rest at EOF.
			if full != 5*3 || len(got) != 5*4 {
				t.Fatalf("want 15 full batches of 20, got %d of %d", full, len(got))
			}
		})
	}
}

// Keys alike in length and first and last 8 bytes share a slot of the
// cache of recent batches: each must still find its own.
func TestKeysSharingACacheSlot(t *testing.T) {
	var in []string
	for i := range 60 {
		in = append(in, fmt.Sprintf("aaaaaaaa%03dbbbbbbbb:%d", i%6, i))
	}
	if slot(keyHash([]byte(keyOf(in[0])))) != slot(keyHash([]byte(keyOf(in[1])))) {
		t.Fatal("the keys do not share a slot: the test tests nothing")
	}
	for _, block := range []bool{false, true} {
		rs := recs(in...)
		if block {
			rs = blocks(in, 7)
		}
		sink := newSink()
		p := &Pipeline{Source: &sliceSource{recs: rs, n: 4}, Sink: sink,
			Config: cfg(Config{MaxRecords: 4, Key: prefixKey, MaxOpenKeys: 5})}
		st, err := p.Run(context.Background())
		if err != nil || st.Delivered != 60 {
			t.Fatalf("err %v, stats %+v", err, st)
		}
		checkKeyed(t, sink.got(), in)
	}
}

// A key shorter than 8 bytes is found by its sum alone: sums of different
// keys must differ.
func TestShortKeysHaveSumsOfTheirOwn(t *testing.T) {
	keys := []string{"", "a", "\x00a", "a\x00", "\x00\x00a", "ab", "ba", "abcdefg", "\x00bcdefg", "\xff\xff\xff\xff\xff\xff\xff"}
	seen := map[uint64]string{}
	for _, k := range keys {
		h := keyHash([]byte(k))
		if o, ok := seen[h]; ok {
			t.Fatalf("%q and %q have the same sum %#x", o, k, h)
		}
		seen[h] = k
	}
}

func TestKeyedLingerPerKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &chanSource{in: make(chan []Record)}
		sink := newSink()
		p := &Pipeline{Source: src, Sink: sink,
			Config: cfg(Config{MaxRecords: 10, Linger: 5 * time.Second, Key: prefixKey})}
		done := runAsync(t, p)
		src.in <- recs("a:1")
		advance(3 * time.Second)
		src.in <- recs("b:1", "a:2")
		advance(2 * time.Second)
		synctest.Wait()
		got := sink.got()
		if len(got) != 1 || got[0].at != 5*time.Second || got[0].reason != ReasonLinger ||
			!slices.Equal(got[0].records, []string{"a:1", "a:2"}) {
			t.Fatalf("want [a:1 a:2] at 5s for linger, got %+v", got)
		}
		// b's linger runs from its own first record, at 3s; a new batch of
		// a starts its own.
		advance(time.Second)
		src.in <- recs("a:3")
		advance(2 * time.Second)
		synctest.Wait()
		got = sink.got()
		if len(got) != 2 || got[1].at != 8*time.Second || !slices.Equal(got[1].records, []string{"b:1"}) {
			t.Fatalf("want [b:1] at 8s, got %+v", got)
		}
		advance(3 * time.Second)
		synctest.Wait()
		got = sink.got()
		if len(got) != 3 || got[2].at != 11*time.Second || !slices.Equal(got[2].records, []string{"a:3"}) {
			t.Fatalf("want [a:3] at 11s, got %+v", got)
		}
		close(src.in)
		if st := <-done; st.Delivered != 4 || st.Reasons["linger"] != 3 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestMaxOpenKeysFlushesTheOldest(t *testing.T) {
	in := []string{"a:1", "b:1", "a:2", "c:1", "b:2", "d:1", "a:3", "c:2"}
	sink := newSink()
	p := &Pipeline{Source: &sliceSource{recs: recs(in...), n: 1}, Sink: sink,
		Config: cfg(Config{MaxRecords: 10, Key: prefixKey, MaxOpenKeys: 2})}
	st, err := p.Run(context.Background())
	if err != nil || st.Delivered != int64(len(in)) {
		t.Fatalf("err %v, stats %+v", err, st)
	}
	got := sink.got()
	checkKeyed(t, got, in)
	var order []string
	for _, b := range got {
		order = append(order, fmt.Sprintf("%s%v", strings.Join(b.records, ","), b.reason))
	}
	// c evicts a (oldest record), d evicts b, a evicts c, c evicts d; a and
	// c at EOF.
	want := []string{"a:1,a:2keys", "b:1,b:2keys", "c:1keys", "d:1keys", "a:3eof", "c:2eof"}
	if !slices.Equal(order, want) {
		t.Fatalf("got %q, want %q", order, want)
	}
}

func TestMaxBufferedBytesFlushesTheLargest(t *testing.T) {
	in := []string{"a:1", "a:2", "b:1", "a:3", "c:1"} // 4 bytes each with the delimiter
	sink := newSink()
	p := &Pipeline{Source: &sliceSource{recs: recs(in...), n: 1}, Sink: sink,
		Config: cfg(Config{MaxRecords: 10, Key: prefixKey, MaxBufferedBytes: 16})}
	st, err := p.Run(context.Background())
	if err != nil || st.Delivered != 5 {
		t.Fatalf("err %v, stats %+v", err, st)
	}
	got := sink.got()
	checkKeyed(t, got, in)
	if got[0].reason != ReasonBuffered || !slices.Equal(got[0].records, []string{"a:1", "a:2", "a:3"}) {
		t.Fatalf("want a's three records flushed for buffered bytes first, got %+v", got)
	}
}

func TestRecordWithoutKeyIsRejectedAlone(t *testing.T) {
	in := []string{"a:1", "nokey", "a:2"}
	t.Run("dead letter", func(t *testing.T) {
		dl := &memDL{}
		sink := newSink()
		src := &ackSource{sliceSource: sliceSource{recs: recs(in...), n: 3}}
		p := &Pipeline{Source: src, Sink: sink, Config: cfg(Config{Key: prefixKey, DeadLetter: dl})}
		st, err := p.Run(context.Background())
		if err != nil || st.Delivered != 2 || st.DeadLettered != 1 {
			t.Fatalf("err %v, stats %+v", err, st)
		}
		if !slices.Equal(dl.records, []string{"nokey"}) || !strings.Contains(dl.reasons[0], "no ':'") {
			t.Fatalf("dead letter: %q %q", dl.records, dl.reasons)
		}
		if src.acked != 2 {
			t.Fatalf("acked %d batches, want the dead letter and the batch", src.acked)
		}
	})
	t.Run("in a block", func(t *testing.T) {
		dl := &memDL{}
		sink := newSink()
		p := &Pipeline{Source: &sliceSource{recs: blocks(in, 3), n: 1}, Sink: sink, Config: cfg(Config{Key: prefixKey, DeadLetter: dl})}
		st, err := p.Run(context.Background())
		if err != nil || st.Read != 3 || st.Delivered != 2 || st.DeadLettered != 1 {
			t.Fatalf("err %v, stats %+v", err, st)
		}
		if got := sink.got(); len(got) != 1 || !slices.Equal(got[0].records, []string{"a:1", "a:2"}) || got[0].first.Record != 1 {
			t.Fatalf("got %+v", got)
		}
		if !slices.Equal(dl.records, []string{"nokey"}) {
			t.Fatalf("dead letter: %q", dl.records)
		}
	})
	t.Run("counted", func(t *testing.T) {
		sink := newSink()
		p := &Pipeline{Source: &sliceSource{recs: recs(in...), n: 3}, Sink: sink, Config: cfg(Config{Key: prefixKey})}
		st, err := p.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "record 2") || !strings.Contains(err.Error(), "no key") {
			t.Fatalf("want an error naming record 2, got %v", err)
		}
		if st.Delivered != 2 || st.Undelivered != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// kafkaRecs makes records of one partition at offsets from first; plan,
// if not 0, is their PlanEnd.
func kafkaRecs(part int32, first int64, n int, plan int64) []Record {
	rs := make([]Record, n)
	for i := range rs {
		o := first + int64(i)
		rs[i] = Record{Data: fmt.Appendf(nil, "p%d@%d", part, o),
			Meta: &Meta{Topic: "t", Partition: part, Offset: o, PlanEnd: plan}}
	}
	return rs
}

func TestPlannedCutsIgnoreTheLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &chanSource{in: make(chan []Record)}
		sink := newSink()
		var mu sync.Mutex
		var planned []string
		p := &Pipeline{Source: src, Sink: sink, Config: cfg(Config{MaxRecords: 2, Linger: time.Second,
			Key: PartitionKey, Plan: func(b *Batch) error {
				s, _ := b.Span()
				mu.Lock()
				defer mu.Unlock()
				planned = append(planned, s.ID())
				return nil
			}})}
		done := runAsync(t, p)
		// Offsets 10-14 were cut as one batch before: -n 2 and the linger
		// do not split them; 15 and on are cut anew.
		src.in <- kafkaRecs(0, 10, 3, 15)
		advance(5 * time.Second)
		src.in <- kafkaRecs(0, 13, 2, 15)
		src.in <- kafkaRecs(0, 15, 3, 0)
		// Partition 1: a planned batch the input stops short of.
		src.in <- kafkaRecs(1, 0, 2, 4)
		close(src.in)
		st := <-done
		var got []string
		for _, b := range sink.got() {
			got = append(got, strings.Join(b.records, ",")+" "+b.reason.String())
		}
		want := []string{"p0@10,p0@11,p0@12,p0@13,p0@14 planned", "p0@15,p0@16 size", "p0@17 eof"}
		if !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
		if !slices.Equal(planned, []string{"t-0-15-16", "t-0-17-17"}) {
			t.Fatalf("plan hook saw %q", planned)
		}
		if st.Withdrawn != 2 || st.Reformed != 1 || st.Delivered != 8 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestPlanHookGivesBackOrFails(t *testing.T) {
	t.Run("not owned", func(t *testing.T) {
		sink := newSink()
		p := &Pipeline{Source: &sliceSource{recs: kafkaRecs(0, 0, 4, 0), n: 4}, Sink: sink,
			Config: cfg(Config{MaxRecords: 2, Key: PartitionKey, Plan: func(b *Batch) error {
				if s, _ := b.Span(); s.First == 0 {
					return fmt.Errorf("partition revoked: %w", ErrNotOwned)
				}
				return nil
			}})}
		st, err := p.Run(context.Background())
		if err != nil || st.Withdrawn != 2 || st.Delivered != 2 || len(sink.got()) != 1 {
			t.Fatalf("err %v, stats %+v", err, st)
		}
	})
	t.Run("error", func(t *testing.T) {
		sink := newSink()
		p := &Pipeline{Source: &sliceSource{recs: kafkaRecs(0, 0, 4, 0), n: 4}, Sink: sink,
			Config: cfg(Config{MaxRecords: 2, Key: PartitionKey, Plan: func(b *Batch) error {
				return errors.New("coordinator unreachable")
			}})}
		st, err := p.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "store the batch's cut: coordinator unreachable") {
			t.Fatalf("want the plan error, got %v", err)
		}
		if st.Delivered != 0 || st.Undelivered != 4 || len(sink.got()) != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestReadAgainAfterReassignmentStartsANewBatch(t *testing.T) {
	rs := append(kafkaRecs(0, 5, 3, 0), kafkaRecs(0, 6, 3, 0)...)
	sink := newSink()
	p := &Pipeline{Source: &sliceSource{recs: rs, n: 6}, Sink: sink,
		Config: cfg(Config{MaxRecords: 10, Key: PartitionKey, Plan: func(*Batch) error { return nil }})}
	if _, err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := sink.got()
	if len(got) != 2 || got[0].reason != ReasonKey || len(got[0].records) != 3 || got[1].records[0] != "p0@6" {
		t.Fatalf("got %+v", got)
	}
}

// A member stalled past its session gets a partition back from a later
// offset, another member having delivered meanwhile, while a batch of its
// earlier assignment is still open. The plan hook gives that batch back;
// the records of the new assignment go on in a batch of their own.
func TestReassignedPastAnOpenBatchStartsANewBatch(t *testing.T) {
	rs := append(kafkaRecs(0, 5, 3, 0), kafkaRecs(0, 100, 7, 0)...)
	for _, r := range rs[3:] {
		r.Meta.Assignment = 1
	}
	sink := newSink()
	p := &Pipeline{Source: &sliceSource{recs: rs, n: 10}, Sink: sink,
		Config: cfg(Config{MaxRecords: 10, Key: PartitionKey, Plan: func(b *Batch) error {
			if b.Meta(0).Assignment == 0 {
				return fmt.Errorf("partition revoked: %w", ErrNotOwned)
			}
			return nil
		}})}
	st, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := sink.got()
	if st.Withdrawn != 3 || st.Delivered != 7 || len(got) != 1 || got[0].records[0] != "p0@100" {
		t.Fatalf("want offsets 5-7 given back and 100-106 delivered, got stats %+v, batches %+v", st, got)
	}
}

// One batch per Kafka partition (--exactly-once): each lingers from its
// own oldest record.
func TestLingerPerPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &chanSource{in: make(chan []Record)}
		sink := newSink()
		p := &Pipeline{Source: src, Sink: sink, Config: cfg(Config{MaxRecords: 100, Linger: 2 * time.Second,
			Key: PartitionKey, Plan: func(*Batch) error { return nil }})}
		done := runAsync(t, p)
		src.in <- kafkaRecs(0, 0, 2, 0)
		advance(time.Second)
		src.in <- kafkaRecs(1, 0, 3, 0)
		src.in <- kafkaRecs(0, 2, 1, 0)
		advance(time.Second)
		synctest.Wait()
		got := sink.got()
		if len(got) != 1 || got[0].at != 2*time.Second || !slices.Equal(got[0].records, []string{"p0@0", "p0@1", "p0@2"}) {
			t.Fatalf("want partition 0's three records at 2s, got %+v", got)
		}
		advance(time.Second)
		synctest.Wait()
		got = sink.got()
		if len(got) != 2 || got[1].at != 3*time.Second || len(got[1].records) != 3 || got[1].reason != ReasonLinger {
			t.Fatalf("want partition 1's records at 3s, got %+v", got)
		}
		close(src.in)
		if st := <-done; st.Delivered != 6 || st.Reasons["linger"] != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// Keys fill their batches at the same pace, so their flushes come in
// bursts. A burst waits for the workers without stopping reading, and goes
// in flush order; but only so far: reading pauses once as many batches
// wait as are recycled, or they hold (Parallel+1) x MaxBytes.
func TestKeyedBurstDoesNotStopReading(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxBytes int
		most     int // records read, at most, while the sink holds the first batch
	}{
		{"batches", 0, 67 + 4}, // -j 1: 1+2+64 batches recycled, 2 in the workers' hands
		{"bytes", 64, 2*64/5 + 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := &chanSource{in: make(chan []Record)}
				release := make(chan struct{})
				sink := newSink()
				sink.deliver = func(ctx context.Context, b *Batch) error {
					select {
					case <-release:
					case <-ctx.Done():
					}
					return nil
				}
				p := &Pipeline{Source: src, Sink: sink,
					Config: cfg(Config{MaxRecords: 1, Key: prefixKey, MaxBytes: tc.maxBytes})}
				done := runAsync(t, p)
				var in []string
				send := func(rs ...string) bool {
					select {
					case src.in <- recs(rs...):
						in = append(in, rs...)
						return true
					case <-time.After(time.Minute):
						return false
					}
				}
				end := func() Stats {
					close(release)
					close(src.in)
					return <-done
				}
				// Ten batches flushed at once: one in the sink, one queued.
				if !send(interleaved(10, 10)...) || !send("k1:10") || !send("k2:11") {
					end()
					t.Fatal("reading stopped behind a burst of flushes")
				}
				for i := 12; send(fmt.Sprintf("k%d:%d", i, i)); i++ {
					if len(in) > tc.most {
						end()
						t.Fatalf("read %d records while the sink held the first batch: no bound", len(in))
					}
				}
				st := end()
				if st.Delivered != int64(len(in)) || st.Batches != int64(len(in)) {
					t.Fatalf("read %d, stats %+v", len(in), st)
				}
				got := sink.got()
				checkKeyed(t, got, in)
				for i, b := range got {
					if b.seq != int64(i+1) {
						t.Fatalf("delivered batch %d as the %dth: waiting batches go in flush order", b.seq, i+1)
					}
				}
			})
		})
	}
}

// fuzzKey keys a record by what comes before its first ':', or all of it;
// an empty record has no key.
func fuzzKey(dst []byte, r *Record) ([]byte, error) {
	if len(r.Data) == 0 {
		return dst, errors.New("empty record")
	}
	k, _, _ := bytes.Cut(r.Data, []byte{':'})
	return append(dst, k...), nil
}

// Keyed blocks take a path of their own (addKeyedBlock): it must batch as
// records one by one do, whatever the limits.
func FuzzKeyedBlocksBatchLikeRecords(f *testing.F) {
	f.Add([]byte("a1\nb1\na2\n\nc1\nb2\na3\n"), uint64(5), uint8(2), uint16(0), uint8(2), uint16(0))
	f.Add([]byte("one\ntwo\nthree\nfour\nfive\nsix\n"), uint64(0xff), uint8(0), uint16(9), uint8(1), uint16(7))
	f.Add([]byte("aaaaaaaa1bbbbbbbb:1\na:2\naaaaaaaa2bbbbbbbb:3\n\x00a:4\naaaaaaaa1bbbbbbbb:5\n"), uint64(3), uint8(3), uint16(0), uint8(3), uint16(0))
	f.Fuzz(func(t *testing.T, in []byte, cuts uint64, maxRecords uint8, maxBytes uint16, maxKeys uint8, maxBuffered uint16) {
		if len(in) == 0 || in[len(in)-1] != '\n' {
			in = append(in, '\n')
		}
		lines := strings.SplitAfter(string(in), "\n")
		lines = lines[:len(lines)-1]
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
		c := cfg(Config{MaxRecords: int(maxRecords), MaxBytes: int(maxBytes), Key: fuzzKey,
			MaxOpenKeys: int(maxKeys % 5), MaxBufferedBytes: int(maxBuffered)})
		run := func(rs []Record) ([]sent, Stats, string) {
			var got []sent
			var st Stats
			var msg string
			synctest.Test(t, func(t *testing.T) {
				sink := newSink()
				p := &Pipeline{Source: &sliceSource{recs: rs, n: 3}, Sink: sink, Config: c}
				var err error
				if st, err = p.Run(context.Background()); err != nil {
					msg = err.Error()
				}
				got = sink.got()
			})
			for i := range got {
				got[i].at = 0
			}
			return got, st, msg
		}
		want, wantStats, wantErr := run(one)
		got, gotStats, gotErr := run(blocked)
		if !slices.EqualFunc(got, want, func(a, b sent) bool {
			return a.seq == b.seq && a.reason == b.reason && a.first == b.first && slices.Equal(a.records, b.records)
		}) {
			t.Fatalf("blocks made\n%+v\nrecords made\n%+v", got, want)
		}
		// And both batch by key, in order within a key.
		key := func(s string) string { k, _, _ := strings.Cut(s, ":"); return k }
		byKey, wantByKey := map[string][]string{}, map[string][]string{}
		for _, b := range got {
			for _, r := range b.records {
				if key(r) != key(b.records[0]) {
					t.Fatalf("batch %d mixes keys: %q", b.seq, b.records)
				}
				byKey[key(r)] = append(byKey[key(r)], r)
			}
		}
		for _, r := range one {
			if len(r.Data) > 0 {
				wantByKey[key(string(r.Data))] = append(wantByKey[key(string(r.Data))], string(r.Data))
			}
		}
		if !reflect.DeepEqual(byKey, wantByKey) {
			t.Fatalf("by key %q, want %q", byKey, wantByKey)
		}
		gotStats.Elapsed, wantStats.Elapsed = 0, 0
		if !reflect.DeepEqual(gotStats, wantStats) || gotErr != wantErr {
			t.Fatalf("stats %+v, %q, want %+v, %q", gotStats, gotErr, wantStats, wantErr)
		}
	})
}

// A new buffer is made as large as the last full batch (and an eighth),
// not grown to it by append, while the capacity taken by open batches
// stays within MaxBufferedBytes; past it, a small one is.
func TestNewKeyedBuffersAreSizedAsAFullBatch(t *testing.T) {
	p := &Pipeline{Config: cfg(Config{Key: prefixKey, MaxRecords: 4, MaxBufferedBytes: 2000}).withDefaults()}
	p.free = make(chan *Batch) // nothing recycled: every buffer is new
	queue := make(chan *Batch, 10)
	a := &aggregator{p: p, cfg: &p.Config, queue: queue, ctx: context.Background(),
		keyed: newKeyedState(), pos: Pos{Record: 1}}
	rec := func(key string) string { return key + ":" + strings.Repeat("x", 197) + "\n" } // 200 bytes
	var block strings.Builder
	for _, k := range []string{"a", "a", "a", "a", "b", "c"} {
		block.WriteString(rec(k))
	}
	a.addKeyedBlock([]byte(block.String()))

	if full := <-queue; full.Len() != 4 || full.Reason != ReasonSize {
		t.Fatalf("want a's 4 records flushed full, got %d (%v)", full.Len(), full.Reason)
	}
	if got := cap(a.keyed.open["b"].b.buf); got != 900 {
		t.Errorf("b's buffer: capacity %d, want 900 (the 800 bytes of the full batch and an eighth)", got)
	}
	if got := cap(a.keyed.open["b"].b.ends); got != 4 {
		t.Errorf("b's record ends: capacity %d, want 4", got)
	}
	// b and c take 1800 of the 2000: a third new buffer would pass it.
	if got := cap(a.keyed.open["c"].b.buf); got != 900 {
		t.Errorf("c's buffer: capacity %d, want 900", got)
	}
	a.addKeyedBlock([]byte(rec("d")))
	if got := cap(a.keyed.open["d"].b.buf); got > 512 {
		t.Errorf("d's buffer: capacity %d past MaxBufferedBytes, want a small one", got)
	}
}
