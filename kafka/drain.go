// The drain check of --until-end: whether every partition, read here or
// by the group's other members, was delivered up to its end offset.

package kafka

import (
	"fmt"
	"maps"
	"strings"
	"time"
)

// groupPoll is how often a member that drained its partitions asks for
// the group's offsets of the others.
const groupPoll = 250 * time.Millisecond

// groupShort returns the partitions of the topics not held by this member
// whose group offset is short of its end offset, and records their lag.
func (k *Source) groupShort() ([]commit, error) {
	k.mu.Lock()
	ends := maps.Clone(k.ends)
	k.mu.Unlock()
	held := k.track.held()
	claims := make(map[string][]int32)
	for tp := range ends {
		if !held[tp] {
			claims[tp.topic] = append(claims[tp.topic], tp.part)
		}
	}
	if len(claims) == 0 {
		return nil, nil
	}
	c, err := k.probeClient()
	if err != nil {
		return nil, err
	}
	committed, err := k.fetchCommittedWith(c, claims)
	if err != nil {
		return nil, err
	}
	var short []commit
	for tp, off := range committed {
		end := ends[tp]
		if off < 0 { // nothing committed: reading would start per From
			if off, _, err = k.startOffset(tp.topic, tp.part); err != nil {
				return nil, err
			}
		}
		if off < end {
			short = append(short, commit{&partState{tp: tp, end: end}, off})
		}
	}
	sortCommits(short)
	k.setOthersLag(ends, short)
	return short, nil
}

// notDrained is Run's error when other members left partitions short of
// their end for Timeout.
func (k *Source) notDrained(short []commit, err error, waited time.Duration) error {
	if err != nil {
		return fmt.Errorf("kafka: group %q: could not tell, for %v (--kafka-timeout), whether the other members drained their partitions: %w",
			k.cfg.Group, waited.Round(time.Second), err)
	}
	parts := make([]string, len(short))
	for i, c := range short {
		parts[i] = fmt.Sprintf("%s[%d] at %d of %d", c.st.tp.topic, c.st.tp.part, c.offset, c.st.end)
	}
	return fmt.Errorf("kafka: group %q: not drained: %s held by other members, committed short of their end for %v (--kafka-timeout)",
		k.cfg.Group, strings.Join(parts, ", "), waited.Round(time.Second))
}

// setOthersLag records the lag of the partitions other members hold: of
// those short, and none for the others not held.
func (k *Source) setOthersLag(ends map[topicPartition]int64, short []commit) {
	lag := make(map[topicPartition]int64)
	for tp := range ends {
		lag[tp] = 0
	}
	for _, c := range short {
		lag[c.st.tp] = c.st.end - c.offset
	}
	k.othersLag.Store(&lag)
}

// initOthersLag sets the lag of every partition from the group's offsets
// before anything is read, so that a run that never gets its partitions
// does not say lag 0. Where the offset is unknown, the whole partition.
func (k *Source) initOthersLag() {
	claims := make(map[string][]int32)
	for tp := range k.ends {
		claims[tp.topic] = append(claims[tp.topic], tp.part)
	}
	committed, err := k.fetchCommitted(claims)
	lag := make(map[topicPartition]int64)
	for tp, end := range k.ends {
		lag[tp] = end
		if c, ok := committed[tp]; ok && err == nil && c >= 0 {
			lag[tp] = max(0, end-c)
		}
	}
	k.othersLag.Store(&lag)
}

// CheckDrain returns, after Close, an error if Run drained the partitions
// (UntilEnd, with a group) and the group's offset of one this process still
// held at the end is short of its end offset: a rebalance gave it back
// while its last records were delivered, and they were not committed. The
// next run reads them again. A partition the rebalance gave to another
// member is that member's to finish.
func (k *Source) CheckDrain() error {
	if k.group == nil || !k.reachedEnd.Load() {
		return nil
	}
	short := k.track.shortOfEnd()
	if len(short) == 0 {
		return nil
	}
	parts := make([]string, len(short))
	for i, c := range short {
		parts[i] = fmt.Sprintf("%s[%d] at %d of %d", c.st.tp.topic, c.st.tp.part, c.offset, c.st.end)
	}
	return fmt.Errorf("kafka: group %q: committed short of the end offsets: %s; the records from there will be read again",
		k.cfg.Group, strings.Join(parts, ", "))
}
