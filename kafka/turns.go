// Turns: within a run, the transactions of one source partition commit
// in the order its batches were formed.

package kafka

import (
	"context"
	"sync"
)

// turns orders the transactions of each source partition as its batches
// were formed.
type turns struct {
	mu      sync.Mutex
	queue   map[string][]string // per partition, the ids of batches planned and not settled
	part    map[string]string   // batch id → partition
	blocked map[string]error    // partitions with a batch not delivered
	change  chan struct{}       // closed at every change
}

func newTurns() *turns {
	return &turns{queue: make(map[string][]string), part: make(map[string]string),
		blocked: make(map[string]error), change: make(chan struct{})}
}

func (t *turns) changed() {
	close(t.change)
	t.change = make(chan struct{})
}

func (t *turns) plan(id, part string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.queue[part] = append(t.queue[part], id)
	t.part[id] = part
}

func (t *turns) settled(id string, failed error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	part, ok := t.part[id]
	if !ok {
		return
	}
	delete(t.part, id)
	q := t.queue[part]
	for i, x := range q {
		if x == id {
			t.queue[part] = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	if len(t.queue[part]) == 0 {
		delete(t.queue, part)
	}
	if failed != nil && t.blocked[part] == nil {
		t.blocked[part] = failed
	}
	t.changed()
}

// wait returns once batch id is the oldest of its partition not settled,
// or an error if an earlier one was not delivered. A batch never planned
// does not wait.
func (t *turns) wait(ctx context.Context, id, part string) error {
	for {
		t.mu.Lock()
		if err := t.blocked[part]; err != nil {
			t.mu.Unlock()
			return err
		}
		q := t.queue[part]
		if len(q) == 0 || q[0] == id || t.part[id] == "" {
			t.mu.Unlock()
			return nil
		}
		ch := t.change
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}
