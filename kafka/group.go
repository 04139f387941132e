// The consumer group: its sessions, the handler of each (partitions
// assigned and revoked), cooperative claims, and the group's state for
// the status line and metrics.

package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/monitor"
)

// joinNotice says, once the first join has waited a while, what it waits
// for: after a member was killed, the group holds its partitions until its
// session times out, and the join is silent meanwhile.
func (k *Source) joinNotice() *time.Timer {
	session := k.client.Config().Consumer.Group.Session.Timeout
	return time.AfterFunc(min(4*time.Second, session/2), func() {
		if k.sessions.Load() == 0 && k.life.Err() == nil {
			k.log.Warn(fmt.Sprintf("kafka: waiting for the group to assign partitions: a member that stopped may hold partitions until its session times out, %v", session),
				"group", k.cfg.Group)
		}
	})
}

// consumeGroup keeps a session of the group going until Close: a session
// ends at every rebalance. A join the group refuses for good fails Run at
// once; other errors are retried until no partitions have been assigned
// for Timeout.
func (k *Source) consumeGroup() {
	var wait *time.Timer
	unassigned := time.Now() // since when no partitions have been assigned
	for k.life.Err() == nil {
		sessions := k.sessions.Load()
		var notice *time.Timer
		if sessions == 0 {
			notice = k.joinNotice()
		}
		err := k.group.Consume(k.life, k.cfg.Topics, groupHandler{k})
		if notice != nil {
			notice.Stop()
		}
		if k.life.Err() != nil || errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return
		}
		if k.sessions.Load() != sessions {
			unassigned = time.Now() // a session ended just now
		}
		if err == nil {
			continue
		}
		if errors.Is(err, sarama.ErrOffsetOutOfRange) {
			return // Setup failed the run: records were deleted unread
		}
		if why := k.refusal(err); why != "" {
			err = fmt.Errorf("kafka: group %q: %w; %s", k.cfg.Group, err, why)
			// A fenced member stops, whatever it read: its partitions are
			// the newer member's, which reads them from the last commit.
			if k.sessions.Load() == 0 || errors.Is(err, sarama.ErrFencedInstancedId) {
				err = refused(err)
			}
			k.fail(err)
			return
		}
		if down := time.Since(unassigned); down >= k.cfg.Timeout {
			k.fail(fmt.Errorf("kafka: group %q: no partitions assigned for %v (--kafka-timeout): %w",
				k.cfg.Group, down.Round(time.Second), err))
			return
		}
		k.log.Warn("kafka: join group, retrying", "group", k.cfg.Group, "err", err)
		if wait == nil {
			wait = time.NewTimer(time.Second)
			defer wait.Stop()
		} else {
			wait.Reset(time.Second)
		}
		select {
		case <-wait.C:
		case <-k.life.Done():
			return
		}
	}
}

// refusal says what to do about a join error the group will repeat however
// often it is retried, as Kafka's own consumer judges them; "" for others.
func (k *Source) refusal(err error) string {
	switch {
	case errors.Is(err, sarama.ErrInvalidSessionTimeout):
		return fmt.Sprintf("set --kafka-session-timeout (now %v) between the broker's group.min.session.timeout.ms and group.max.session.timeout.ms (by default 6s and 30m)",
			k.client.Config().Consumer.Group.Session.Timeout)
	case errors.Is(err, sarama.ErrGroupAuthorizationFailed):
		return "the user needs Read on the group"
	case errors.Is(err, sarama.ErrTopicAuthorizationFailed):
		return "the user needs Read on the topics"
	case errors.Is(err, sarama.ErrInvalidGroupId):
		return "give another --group"
	case errors.Is(err, sarama.ErrInconsistentGroupProtocol):
		return "its members use another --rebalance-strategy (switching one needs every member stopped), or it is used by consumers of another kind"
	case errors.Is(err, sarama.ErrGroupMaxSizeReached):
		return "it has as many members as the broker allows (group.max.size)"
	case errors.Is(err, sarama.ErrUnsupportedVersion):
		return "batchpipe needs Kafka 2.4 or later"
	case errors.Is(err, sarama.ErrFencedInstancedId):
		return fmt.Sprintf("another member joined with --group-instance-id %q: one instance id per member",
			k.client.Config().Consumer.Group.InstanceId)
	}
	return ""
}

// replaced reports whether a commit failed because the group has moved to
// a generation without this member, or is moving to one.
func replaced(err error) bool {
	return errors.Is(err, sarama.ErrUnknownMemberId) || errors.Is(err, sarama.ErrIllegalGeneration) ||
		errors.Is(err, sarama.ErrRebalanceInProgress) || errors.Is(err, sarama.ErrFencedInstancedId)
}

// gone reports whether a commit failed because the group no longer knows
// this member: its session ends, whatever the strategy.
func gone(err error) bool {
	return errors.Is(err, sarama.ErrUnknownMemberId) || errors.Is(err, sarama.ErrFencedInstancedId)
}

// leaveUnjoined leaves the group for a member stopped with its join under
// way, whose own leave, in sarama's Close, waits for the lock the join
// holds, up to the rebalance timeout. Meanwhile the group would wait for
// the member gone: Kafka assigns it partitions and waits a session timeout
// for it to take them; kfake, which cannot answer its join, a rebalance
// timeout. The leave goes on a client of its own: a broker answers a
// connection's requests in order, and the join holds the main client's.
// It names the member id of the last session, which Kafka keeps across
// generations, and no generation; if the group forgot the member meanwhile
// and it joined again under a new id, the leave is refused as unknown. A
// member that never had a session has no id to leave with. Best effort,
// given up once ctx is done: nothing is lost either way.
func (k *Source) leaveUnjoined(ctx context.Context) {
	k.mu.Lock()
	id := k.memberID
	k.mu.Unlock()
	// A static member's leave would rebalance the group, which static
	// membership spares it; its next start replaces its join.
	if id == "" || k.client.Config().Consumer.Group.InstanceId != "" || ctx.Err() != nil {
		return
	}
	client, err := k.sideClient()
	if err == nil {
		defer client.Close() // ends the request, if it is still unanswered
		done := make(chan error, 1)
		go func() { done <- leaveGroup(client, k.cfg.Group, id) }()
		select {
		case err = <-done:
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
	}
	switch {
	case err == nil:
		k.log.Debug("kafka: left the group while joining", "group", k.cfg.Group, "member", id)
	case errors.Is(err, sarama.ErrUnknownMemberId):
		k.log.Debug("kafka: left the group while joining: it no longer knew this member", "group", k.cfg.Group, "member", id)
	default:
		k.log.Warn("kafka: leave group while joining; its other members may wait a session timeout for this member",
			"group", k.cfg.Group, "err", err)
	}
}

// leaveGroup sends the group's coordinator the LeaveGroup of dynamic
// member id, at the version sarama's own leave sends.
func leaveGroup(client sarama.Client, group, id string) error {
	coord, err := client.Coordinator(group)
	if err != nil {
		return fmt.Errorf("kafka: group %q: find coordinator: %w", group, err)
	}
	// From version 3 (KIP-345), a list of members, each with its group
	// instance id: none, for a dynamic one.
	req := &sarama.LeaveGroupRequest{Version: 4, GroupId: group, Members: []sarama.MemberIdentity{{MemberId: id}}}
	if client.Config().Version.IsAtLeast(sarama.V3_2_0_0) {
		req.Version = 5
	}
	resp, err := coord.LeaveGroup(req)
	if err == nil {
		err = leaveErr(resp)
	}
	if err != nil {
		return fmt.Errorf("kafka: group %q: leave as member %s: %w", group, id, err)
	}
	return nil
}

// leaveErr returns the error of a LeaveGroup response, its own or its
// member's; nil for none.
func leaveErr(resp *sarama.LeaveGroupResponse) error {
	if resp.Err != sarama.ErrNoError {
		return resp.Err
	}
	for _, m := range resp.Members {
		if m.Err != sarama.ErrNoError {
			return m.Err
		}
	}
	return nil
}

// groupHandler is the Kafka source as sarama's group handler.
type groupHandler struct{ k *Source }

// Setup finds where each assigned partition starts: the group's committed
// offset, or From where there is none.
func (h groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	k := h.k
	k.mu.Lock()
	defer k.mu.Unlock()
	k.noteGeneration(sess.GenerationID())
	states, err := k.assignLocked(sess, sess.Claims(), true)
	if err != nil {
		return err
	}
	k.track.activate()
	k.sess = sess
	k.memberID = sess.MemberID()
	k.sessions.Add(1)
	if !k.pausedAt.IsZero() {
		k.pausedNs.Add(int64(time.Since(k.pausedAt)))
		k.pausedAt = time.Time{}
	}
	k.logAssigned(sess.GenerationID(), states)
	k.changed()
	return nil
}

// assignLocked starts tracking claims from where each starts: the group's
// committed offset, or From where there is none. With mark, sarama has yet
// to start reading them, and is told where. k.mu is held.
func (k *Source) assignLocked(sess sarama.ConsumerGroupSession, claims map[string][]int32, mark bool) (map[topicPartition]*partState, error) {
	committed, err := k.fetchCommitted(claims)
	if err != nil {
		return nil, err
	}
	states := make(map[topicPartition]*partState)
	for _, topic := range sortedKeys(claims) {
		for _, p := range claims[topic] {
			tp := topicPartition{topic, p}
			var start, hwm int64
			if c, ok := committed[tp]; ok && c >= 0 {
				start = c
				if hwm, err = k.client.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
					return nil, fmt.Errorf("kafka: %s[%d]: end offset: %w", topic, p, err)
				}
				oldest, err := k.client.GetOffset(topic, p, sarama.OffsetOldest)
				if err != nil {
					return nil, fmt.Errorf("kafka: %s[%d]: start offset: %w", topic, p, err)
				}
				// sarama would start elsewhere without a word.
				if c < oldest || c > hwm {
					err := fmt.Errorf("kafka: %s[%d]: group %q's committed offset %d is outside the offsets kept (%d-%d): %w; "+
						"records were deleted before they were read: reset the group's offsets to go on without them",
						topic, p, k.cfg.Group, c, oldest, hwm, sarama.ErrOffsetOutOfRange)
					k.fail(err)
					return nil, err
				}
			} else {
				if start, hwm, err = k.startOffset(topic, p); err != nil {
					return nil, err
				}
				if mark {
					// Where sarama starts the claim.
					sess.MarkOffset(topic, p, start, "")
				}
			}
			end := int64(-1)
			if k.cfg.UntilEnd {
				// The end captured at the first assignment holds, so that
				// records produced meanwhile do not move it.
				e, ok := k.ends[tp]
				if !ok {
					if e, err = k.stopOffset(topic, p); err != nil {
						return nil, err
					}
					k.ends[tp] = e
				}
				end = e
			}
			states[tp] = k.track.assign(topic, p, start, end, hwm)
		}
	}
	if err := k.loadCuts(states); err != nil {
		return nil, err
	}
	return states, nil
}

// logAssigned says which partitions an assignment of generation gen gave
// this member, once what the stats file, metrics and status line show of
// it is in place: its generation, its partitions, no lag of those given up
// and the pause it ended. Tests read them right after this line.
func (k *Source) logAssigned(gen int32, states map[topicPartition]*partState) {
	sts := slices.SortedFunc(maps.Values(states), func(a, b *partState) int {
		return cmp.Or(strings.Compare(a.tp.topic, b.tp.topic), cmp.Compare(a.tp.part, b.tp.part))
	})
	names := make([]string, len(sts))
	for i, st := range sts {
		names[i] = partName(st.tp.topic, st.tp.part, st.start, st.end)
	}
	k.log.Debug("kafka: assigned", "group", k.cfg.Group, "generation", gen,
		"count", len(names), "partitions", strings.Join(names, " "))
}

// Cleanup hands the partitions over without a record delivered twice: no
// batch holding their records starts from now on (the new owner reads them
// again); the batches being delivered are waited for, within the rebalance
// timeout, and what they delivered is committed; acks arriving later for
// them are ignored.
func (h groupHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	k := h.k
	start := time.Now()
	k.track.revoke()
	k.waitInFlight()
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closing {
		// Reading stands still until the next Setup.
		k.pausedAt = start
		if err := k.commitLocked(sess); err != nil {
			k.log.Warn("kafka: commit at rebalance", "group", k.cfg.Group, "err", err)
		}
	}
	k.track.revokeAll(k.closing)
	k.sess = nil
	k.log.Debug("kafka: revoked", "group", k.cfg.Group, "generation", sess.GenerationID())
	k.changed()
	return nil
}

// ConsumeClaim reads one partition. Eager, it returns only when the
// session ends: in sarama a handler that returns ends the session of every
// partition. Cooperative, see consumeCoop.
func (h groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	k := h.k
	if k.coop {
		return k.consumeCoop(sess, claim)
	}
	if st := k.track.get(claim.Topic(), claim.Partition()); st != nil {
		k.read(sess.Context(), st, claim.Messages(), claim.HighWaterMarkOffset)
	}
	<-sess.Context().Done()
	return nil
}

// consumeCoop reads one partition of a cooperative session until it is
// revoked, which closes its messages, or the session ends. A partition a
// rebalance adds is set up here: Setup ran for the first assignment only.
// A revoked one is handed over as Cleanup hands over all, alone: the other
// partitions go on being read. sarama waits for it to return before it
// rejoins to let the group assign it elsewhere.
func (k *Source) consumeCoop(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	tp := topicPartition{claim.Topic(), claim.Partition()}
	st := k.track.live(tp.topic, tp.part)
	if st == nil {
		k.mu.Lock()
		k.noteGeneration(sess.GenerationID())
		states, err := k.assignLocked(sess, map[string][]int32{tp.topic: {tp.part}}, false)
		if err == nil {
			k.logAssigned(sess.GenerationID(), states)
		}
		k.mu.Unlock()
		if err != nil {
			// Returning ends the session: the next one sets it up again.
			k.log.Warn("kafka: assign partition", "group", k.cfg.Group, "topic", tp.topic, "partition", tp.part, "err", err)
			return err
		}
		st = states[tp]
		k.changed()
	}
	msgs := claim.Messages()
	if claim.InitialOffset() < st.start {
		// sarama started where nothing is committed at the oldest
		// record: From is further on.
		msgs = skipBelow(sess.Context(), msgs, st.start)
	}
	k.read(sess.Context(), st, msgs, claim.HighWaterMarkOffset)
	for range msgs {
		// Past the end offset: dropped, as sarama needs its channel read
		// to close it, and nothing past the end is committed.
	}
	if sess.Context().Err() != nil {
		return nil // the session ends: Cleanup lets every partition go
	}
	start := time.Now()
	k.track.revokeParts(tp)
	k.waitInFlight()
	k.mu.Lock()
	if !k.closing || k.finalPending {
		if err := k.commitLocked(sess); err != nil {
			k.log.Warn("kafka: commit at rebalance", "group", k.cfg.Group, "err", err)
		}
	}
	k.track.letGoParts(tp)
	k.noteGeneration(sess.GenerationID())
	k.mu.Unlock()
	k.pausedNs.Add(int64(time.Since(start)))
	k.log.Debug("kafka: revoked", "group", k.cfg.Group, "generation", sess.GenerationID(), "topic", tp.topic, "partition", tp.part)
	k.changed()
	return nil
}

// skipBelow passes on the messages of in from offset from on.
func skipBelow(ctx context.Context, in <-chan *sarama.ConsumerMessage, from int64) <-chan *sarama.ConsumerMessage {
	out := make(chan *sarama.ConsumerMessage)
	go func() {
		defer close(out)
		for m := range in {
			if m.Offset < from {
				continue
			}
			select {
			case out <- m:
			case <-ctx.Done():
				for range in {
				}
				return
			}
		}
	}()
	return out
}

// noteGeneration records the group generation this member is in, counting
// each new one after the first as a rebalance.
func (k *Source) noteGeneration(g int32) {
	if old := k.generation.Swap(g); old != g && old != 0 {
		k.rebalances.Add(1)
	}
}

// GroupState says what this member of the group holds and has been
// through; the zero value without a group.
func (k *Source) GroupState() monitor.GroupState {
	if k.group == nil {
		return monitor.GroupState{}
	}
	held := k.track.held()
	parts := make([]string, 0, len(held))
	for tp := range held {
		parts = append(parts, fmt.Sprintf("%s[%d]", tp.topic, tp.part))
	}
	sort.Strings(parts)
	return monitor.GroupState{
		Group:      k.cfg.Group,
		Generation: k.generation.Load(),
		Partitions: parts,
		Rebalances: k.rebalances.Load(),
		Paused:     time.Duration(k.pausedNs.Load()),
	}
}

// waitInFlight waits for the batches being delivered that hold records of
// partitions revoked, for no longer than the rebalance timeout leaves: a
// member that rejoins later is dropped from the group, and the group
// rebalances again. Rejoining takes a round trip or two, longer on a busy
// broker: a quarter of the timeout is left for it, and at least half, up to
// 2 s, of a short one.
func (k *Source) waitInFlight() {
	rt := k.client.Config().Consumer.Group.Rebalance.Timeout
	bound := rt - max(rt/4, min(rt/2, 2*time.Second))
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for {
		n, settled := k.track.inFlight()
		if n == 0 {
			return
		}
		select {
		case <-settled:
		case <-timer.C:
			k.log.Warn("kafka: rebalance: gave up waiting for batches in flight; their records will be read again by the partitions' new owners",
				"group", k.cfg.Group, "batches", n, "waited", bound)
			return
		case <-k.life.Done():
			return
		}
	}
}

func (k *Source) changed() {
	select {
	case k.change <- struct{}{}:
	default:
	}
}
