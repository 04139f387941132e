// Commits: the group's offsets of what was delivered, every
// --commit-interval, at each rebalance and at the end.

package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
)

// commitLoop commits delivered offsets every CommitInterval.
func (k *Source) commitLoop() {
	t := time.NewTicker(k.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-k.life.Done():
			return
		case <-t.C:
		}
		k.mu.Lock()
		if k.sess != nil && !k.closing {
			if err := k.commitLocked(k.sess); err != nil {
				k.log.Warn("kafka: commit, retrying", "group", k.cfg.Group, "err", err)
				if replaced(err) && (!k.coop || gone(err)) {
					// The group went on without this member (its
					// session ran out: a stall, a loaded machine):
					// the partitions' new owners read from the last
					// commit, so start no more batches of them.
					// A cooperative session outlives a rebalance:
					// only a member the group no longer knows ends
					// it.
					k.track.revoke()
				}
			}
			k.noteGeneration(k.sess.GenerationID())
		}
		k.mu.Unlock()
	}
}

// finalCommitLocked makes close's commit. A cooperative session outlives
// a rebalance, and sarama takes up the group's new generation only once
// it has joined and synced: meanwhile a commit under the old one is
// refused. Stopping then would leave what was delivered to be read again,
// so the commit is made again under the new generation, waited for no
// longer than the rebalance timeout. k.mu is held; it is let go while
// waiting.
func (k *Source) finalCommitLocked() error {
	err := k.commitLocked(k.sess)
	if err == nil || !k.coop || !replaced(err) || gone(err) {
		return err
	}
	gen := k.sess.GenerationID()
	k.log.Debug("kafka: final commit refused: waiting for the group's next generation", "group", k.cfg.Group, "generation", gen, "err", err)
	k.finalPending = true
	defer func() { k.finalPending = false }()
	deadline := time.Now().Add(k.client.Config().Consumer.Group.Rebalance.Timeout)
	// sarama says nothing when the generation moves: it is looked at
	// often, as each look is cheap and the stop waits on it.
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for time.Now().Before(deadline) {
		k.mu.Unlock()
		<-poll.C
		k.mu.Lock()
		if k.sess == nil {
			return err // the session ended: nothing more can be committed
		}
		if g := k.sess.GenerationID(); g != gen {
			gen = g
			if err = k.commitLocked(k.sess); err == nil || !replaced(err) || gone(err) {
				return err
			}
		}
	}
	return err
}

// fetchCommitted returns the group's committed offsets for the claims; -1
// where there is none.
func (k *Source) fetchCommitted(claims map[string][]int32) (map[topicPartition]int64, error) {
	return k.fetchCommittedWith(k.client, claims)
}

func (k *Source) fetchCommittedWith(client sarama.Client, claims map[string][]int32) (map[topicPartition]int64, error) {
	coord, err := client.Coordinator(k.cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("kafka: group %q coordinator: %w", k.cfg.Group, err)
	}
	req := sarama.NewOffsetFetchRequest(k.client.Config().Version, k.cfg.Group, claims)
	resp, err := coord.FetchOffset(req)
	if err != nil {
		return nil, fmt.Errorf("kafka: group %q: fetch committed offsets: %w", k.cfg.Group, err)
	}
	if resp.Err != sarama.ErrNoError {
		return nil, fmt.Errorf("kafka: group %q: fetch committed offsets: %w", k.cfg.Group, resp.Err)
	}
	out := make(map[topicPartition]int64)
	for topic, parts := range claims {
		for _, p := range parts {
			b := resp.GetBlock(topic, p)
			if b == nil {
				return nil, fmt.Errorf("kafka: group %q: no committed offset in the answer for %s[%d]", k.cfg.Group, topic, p)
			}
			if b.Err != sarama.ErrNoError {
				return nil, fmt.Errorf("kafka: group %q: committed offset of %s[%d]: %w", k.cfg.Group, topic, p, b.Err)
			}
			out[topicPartition{topic, p}] = b.Offset
		}
	}
	return out, nil
}

// commitLocked commits the offsets delivered since the last commit, under
// sess's generation, so that a member that lost its partitions cannot
// commit for them. It waits for the coordinator's answer. k.mu is held.
func (k *Source) commitLocked(sess sarama.ConsumerGroupSession) error {
	cs := k.track.commits()
	if len(cs) == 0 {
		return nil
	}
	if k.cfg.offsetsInSink {
		// The transactions that delivered the records committed their
		// offsets; a tail of markers or aborted records after the last is
		// the source's to commit.
		var rest []commit
		cs, rest = k.track.gateTails(cs)
		k.track.committed(rest)
		if len(cs) == 0 {
			return nil
		}
		defer k.track.ungate(cs)
	}
	req := k.newCommitRequest(sess)
	for _, c := range cs {
		req.AddBlockWithLeaderEpoch(c.st.tp.topic, c.st.tp.part, c.offset, -1, 0, k.commitMetadata(c.st, c.offset))
	}
	coord, err := k.client.Coordinator(k.cfg.Group)
	if err != nil {
		return fmt.Errorf("kafka: group %q coordinator: %w", k.cfg.Group, err)
	}
	resp, err := coord.CommitOffset(req)
	if err != nil {
		k.client.RefreshCoordinator(k.cfg.Group)
		return fmt.Errorf("kafka: group %q: commit offsets: %w", k.cfg.Group, err)
	}
	var ok []commit
	var errs []error
	for _, c := range cs {
		kerr, found := resp.Errors[c.st.tp.topic][c.st.tp.part]
		switch {
		case !found:
			errs = append(errs, fmt.Errorf("%s[%d]: no answer", c.st.tp.topic, c.st.tp.part))
		case kerr != sarama.ErrNoError:
			if errors.Is(kerr, sarama.ErrNotCoordinatorForConsumer) || errors.Is(kerr, sarama.ErrConsumerCoordinatorNotAvailable) {
				k.client.RefreshCoordinator(k.cfg.Group)
			}
			errs = append(errs, fmt.Errorf("%s[%d] at offset %d: %w", c.st.tp.topic, c.st.tp.part, c.offset, kerr))
		default:
			ok = append(ok, c)
		}
	}
	k.track.committed(ok)
	if k.log.Enabled(context.Background(), slog.LevelDebug) {
		for _, c := range ok {
			k.log.Debug("kafka: committed", "group", k.cfg.Group, "topic", c.st.tp.topic, "partition", c.st.tp.part, "offset", c.offset)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("kafka: group %q: commit offsets: %w", k.cfg.Group, errors.Join(errs...))
	}
	return nil
}

// newCommitRequest builds an offset commit under sess at version 8, the
// one sarama's own offset manager uses at Version, the only
// version spoken; a static member names its instance, or is fenced.
func (k *Source) newCommitRequest(sess sarama.ConsumerGroupSession) *sarama.OffsetCommitRequest {
	req := &sarama.OffsetCommitRequest{
		Version:                 8,
		ConsumerGroup:           k.cfg.Group,
		ConsumerID:              sess.MemberID(),
		ConsumerGroupGeneration: sess.GenerationID(),
	}
	if id := k.client.Config().Consumer.Group.InstanceId; id != "" {
		req.GroupInstanceId = &id
	}
	return req
}
