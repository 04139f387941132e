// The handover of revoked partitions: which records of a batch about to
// start are still this member's to deliver, and which batches a revoke
// waits for before it commits and lets the partitions go.

package kafka

import "slices"

// withdraw returns the indexes of b's records that must not be delivered:
// those of assignments given up, and those of partitions revoked, unless a
// batch that started holds records of theirs above b's (partState.above).
// It notes the batch as started with the rest.
func (t *tracker) withdraw(seq int64, b metaLister) []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	top := make(map[*partState]int64) // after b's highest record of each
	t.locate(b, func(_ int, st *partState, j int) {
		if st != nil && j >= 0 {
			top[st] = max(top[st], st.pending[j].Offset+1)
		}
	})
	var (
		idx  []int
		held []*partState
	)
	t.locate(b, func(i int, st *partState, j int) {
		if st == nil || st.gone || j < 0 || st.revoked && top[st] >= st.above {
			idx = append(idx, i)
			return
		}
		st.taken[j] = true
		st.above = max(st.above, st.pending[j].Offset+1)
		if !slices.Contains(held, st) {
			held = append(held, st)
		}
	})
	if len(held) > 0 {
		t.started[seq] = held
	}
	return idx
}

// settle notes that the batch seq is over.
func (t *tracker) settle(seq int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.started[seq]; ok {
		delete(t.started, seq)
		close(t.settled)
		t.settled = make(chan struct{})
	}
}

// inFlight returns how many batches started hold records of revoked
// partitions, and of those yet to start that withdraw lets through, and a
// channel closed when that may have changed.
func (t *tracker) inFlight() (int, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, sts := range t.started {
		for _, st := range sts {
			if st.revoked && !st.gone {
				n++
				break
			}
		}
	}
	for _, st := range t.parts {
		if st.revoked && !st.gone && st.owes() {
			n++
		}
	}
	return n, t.settled
}

// owes reports whether records of st below a batch that started are in
// none that started yet: a worker took theirs later. t.mu is held.
func (st *partState) owes() bool {
	for i := st.head; i < len(st.pending); i++ {
		if st.pending[i].Offset >= st.above {
			return false
		}
		if !st.done[i] && !st.taken[i] {
			return true
		}
	}
	return false
}
