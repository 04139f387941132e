package sinks

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
)

func TestBatchOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var written []string
		o := newBatchOrder(2)
		write := func(s string) func() { return func() { written = append(written, s) } }

		started := make(chan int64, 10)
		for seq := int64(1); seq <= 4; seq++ {
			go func() {
				if err := o.wait(t.Context(), seq); err != nil {
					t.Error(err)
				}
				started <- seq
			}()
		}
		synctest.Wait()
		if got := len(started); got != 2 {
			t.Fatalf("%d deliveries started with a window of 2", got)
		}
		o.hold(2, write("2a"))
		o.hold(2, write("2b"))
		o.settle(2)
		o.hold(1, write("1"))
		synctest.Wait()
		if len(written) != 0 || len(started) != 2 {
			t.Fatalf("wrote %q and started %d before batch 1 settled", written, len(started))
		}
		o.settle(1)
		synctest.Wait()
		if want := []string{"1", "2a", "2b"}; !slices.Equal(written, want) {
			t.Errorf("wrote %q, want %q", written, want)
		}
		if len(started) != 4 {
			t.Errorf("%d deliveries started once batches 1 and 2 were written", len(started))
		}
		o.hold(4, write("4"))
		o.settle(4)
		if len(written) != 3 {
			t.Fatalf("batch 4's output written before batch 3 settled")
		}
		o.settle(3) // never attempted, but settled all the same
		if want := []string{"1", "2a", "2b", "4"}; !slices.Equal(written, want) {
			t.Errorf("wrote %q, want %q", written, want)
		}

		ctx, cancel := context.WithCancelCause(t.Context())
		cause := errors.New("abandoned")
		done := make(chan error)
		go func() { done <- o.wait(ctx, 100) }()
		synctest.Wait()
		cancel(cause)
		if err := <-done; err != cause {
			t.Errorf("wait returned %v, want the cause", err)
		}
	})
}

// With a window of 1 each batch waits for its turn: every batch before it
// settled, in whatever order they did. (Batches 3 and 5 are settled
// without a delivery: abandoned, or not attempted.)
func TestBatchOrderTurns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newBatchOrder(1)
		turn := make(chan int64, 5)
		for _, seq := range []int64{1, 2, 4} {
			go func() {
				if err := o.wait(t.Context(), seq); err != nil {
					t.Error(err)
				}
				turn <- seq
			}()
		}
		synctest.Wait()
		if got := <-turn; got != 1 || len(turn) != 0 {
			t.Fatalf("batch %d's turn first, and %d more at once", got, len(turn))
		}
		for _, seq := range []int64{3, 5} {
			o.settle(seq)
		}
		synctest.Wait()
		if len(turn) != 0 {
			t.Fatalf("a turn came with batch 1 not settled")
		}
		o.settle(1)
		synctest.Wait()
		if got := <-turn; got != 2 || len(turn) != 0 {
			t.Fatalf("after batch 1: batch %d's turn, and %d more", got, len(turn))
		}
		o.settle(2)
		synctest.Wait()
		if got := <-turn; got != 4 || len(turn) != 0 {
			t.Fatalf("after batch 2, with 3 settled: batch %d's turn, and %d more", got, len(turn))
		}
	})
}
