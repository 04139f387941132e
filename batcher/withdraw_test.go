package batcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
)

// revokingSource sends records of partitions 0 and 1, and takes back those
// of the partitions revoked when a batch is about to be attempted.
type revokingSource struct {
	sliceSource
	mu      sync.Mutex
	revoked map[int32]bool
	acked   []string
	settled []int64
}

func newRevokingSource(n int) *revokingSource {
	rs := make([]Record, n)
	for i := range rs {
		p := int32(i % 2)
		rs[i] = Record{Data: fmt.Appendf(nil, "p%d-%d", p, i), Meta: &Meta{Partition: p, Offset: int64(i)}}
	}
	return &revokingSource{sliceSource: sliceSource{recs: rs, n: n}, revoked: make(map[int32]bool)}
}

func (s *revokingSource) revoke(p int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked[p] = true
}

func (s *revokingSource) Withdraw(b *Batch) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var idx []int
	for i := range b.Len() {
		if s.revoked[b.Meta(i).Partition] {
			idx = append(idx, i)
		}
	}
	return idx
}

func (s *revokingSource) Settled(seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settled = append(s.settled, seq)
}

func (s *revokingSource) Ack(b *Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range b.Len() {
		s.acked = append(s.acked, string(b.Record(i)))
	}
}

func TestWithdrawnRecordsAreNeitherDeliveredNorLost(t *testing.T) {
	for _, tc := range []struct {
		name string
		// revokeAt is the attempt before which partition 1 is revoked.
		revokeAt int
		fail     bool // the first attempt fails
		dl       bool
		want     []string // delivered, and so acked
	}{
		{"before the first attempt", 1, false, false, []string{"p0-0", "p0-2", "p0-4"}},
		{"before a retry", 2, true, false, []string{"p0-0", "p0-2", "p0-4"}},
		{"before the dead letter", 3, true, true, []string{"p0-0", "p0-2", "p0-4"}},
		{"never", 0, false, false, []string{"p0-0", "p1-1", "p0-2", "p1-3", "p0-4", "p1-5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := newRevokingSource(6)
				sink := newSink()
				sink.deliver = func(ctx context.Context, b *Batch) error {
					if b.Attempt+1 == tc.revokeAt {
						src.revoke(1)
					}
					if tc.fail && b.Attempt == 1 || tc.dl {
						return errors.New("down")
					}
					return nil
				}
				dl := &memDL{}
				c := Config{MaxRecords: 6, Retries: 1}
				if tc.dl {
					c.DeadLetter = dl
				}
				if tc.revokeAt == 1 {
					src.revoke(1)
				}
				p := &Pipeline{Source: src, Sink: sink, Config: cfg(c)}
				st, err := p.Run(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, b := range sink.got() {
					got = append(got, b.records...)
				}
				if tc.dl {
					got = dl.records
				}
				if !slices.Equal(got, tc.want) || !slices.Equal(src.acked, tc.want) {
					t.Fatalf("delivered %q, acked %q, want %q", got, src.acked, tc.want)
				}
				withdrawn := int64(6 - len(tc.want))
				done := st.Delivered + st.DeadLettered
				if st.Withdrawn != withdrawn || st.Undelivered != 0 || st.InFlight != 0 || done != int64(len(tc.want)) ||
					st.Read != done+st.Withdrawn {
					t.Fatalf("stats %+v, want %d withdrawn", st, withdrawn)
				}
				if !slices.Equal(src.settled, []int64{1}) {
					t.Fatalf("settled %v, want batch 1 once", src.settled)
				}
			})
		})
	}
}

// A batch the source takes back whole is never attempted.
func TestWithdrawnBatchIsNotAttempted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newRevokingSource(6)
		src.revoke(0)
		src.revoke(1)
		sink := newSink()
		var outcomes []Outcome
		c := cfg(Config{MaxRecords: 4})
		c.OnSettled = func(s Settlement) { outcomes = append(outcomes, s.Outcome) }
		p := &Pipeline{Source: src, Sink: sink, Config: c}
		st, err := p.Run(context.Background())
		if err != nil || len(sink.got()) != 0 || st.Withdrawn != 6 || st.Undelivered != 0 || len(src.acked) != 0 {
			t.Fatalf("err %v, sent %v, acked %v, stats %+v", err, sink.got(), src.acked, st)
		}
		if !slices.Equal(outcomes, []Outcome{Withdrawn, Withdrawn}) {
			t.Fatalf("outcomes %v", outcomes)
		}
	})
}
