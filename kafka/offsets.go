// Where reading starts and stops: --from and --until, found as offsets;
// the end offsets; the high watermarks, for the lag.

package kafka

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// From says where reading a partition starts.
type From struct {
	Kind   FromKind
	Offset int64     // FromOffset
	Time   time.Time // FromTime: the first record at or after it
}

// FromKind is the kind of starting point.
type FromKind uint8

const (
	FromOldest FromKind = iota // the oldest record kept
	FromNewest                 // records produced from now on
	FromOffset                 // an offset, the same in every partition
	FromTime                   // the first record with a timestamp at or after a time
)

// ParseFrom parses oldest, newest, an offset or a time (see ParseTime).
func ParseFrom(s string, now time.Time) (From, error) {
	switch s {
	case "oldest", "beginning", "earliest":
		return From{Kind: FromOldest}, nil
	case "newest", "end", "latest":
		return From{Kind: FromNewest}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return From{}, fmt.Errorf("offset %d is negative", n)
		}
		return From{Kind: FromOffset, Offset: n}, nil
	}
	if t, err := ParseTime(s, now); err == nil {
		return From{Kind: FromTime, Time: t}, nil
	}
	return From{}, fmt.Errorf("%q is not oldest, newest, an offset, an RFC 3339 time (2024-05-01T10:00:00Z) or a time before now (-24h)", s)
}

// ParseTime parses an RFC 3339 time, or a duration before now: -24h, -90m.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if strings.HasPrefix(s, "-") {
		if d, err := time.ParseDuration(s); err == nil {
			return now.Add(d), nil
		}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time (2024-05-01T10:00:00Z) or a time before now (-24h)", s)
	}
	return t, nil
}

func (f From) String() string {
	switch f.Kind {
	case FromNewest:
		return "newest"
	case FromOffset:
		return strconv.FormatInt(f.Offset, 10)
	case FromTime:
		return f.Time.Format(time.RFC3339Nano)
	}
	return "oldest"
}

// openTopic checks that topic (and the partitions asked for) exist and,
// without a group, finds where each partition starts and ends; with a
// group and UntilEnd, the end offsets of all its partitions.
func (k *Source) openTopic(topic string) error {
	parts, err := k.client.Partitions(topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return fmt.Errorf("kafka: topic %q does not exist", topic)
	}
	if err != nil {
		return fmt.Errorf("kafka: topic %q: %w", topic, err)
	}
	if k.cfg.Group != "" {
		if k.cfg.UntilEnd {
			// The group's drain is judged against one set of end
			// offsets, taken now, for every partition, read here or
			// by another member.
			for _, p := range parts {
				e, err := k.stopOffset(topic, p)
				if err != nil {
					return err
				}
				k.ends[topicPartition{topic, p}] = e
			}
		}
		return nil
	}
	if k.cfg.Partitions != nil {
		have := make(map[int32]bool, len(parts))
		for _, p := range parts {
			have[p] = true
		}
		for _, p := range k.cfg.Partitions {
			if !have[p] {
				return fmt.Errorf("kafka: topic %q has no partition %d (it has %d)", topic, p, len(parts))
			}
		}
		parts = k.cfg.Partitions
	}
	for _, p := range parts {
		start, hwm, err := k.startOffset(topic, p)
		if err != nil {
			return err
		}
		end := int64(-1)
		if k.cfg.UntilEnd {
			end = hwm
		}
		if !k.cfg.Until.IsZero() {
			if end, err = k.stopOffset(topic, p); err != nil {
				return err
			}
		}
		k.parts = append(k.parts, k.track.assign(topic, p, start, end, hwm))
		k.log.Debug("kafka: reading", "partition", partName(topic, p, start, end))
	}
	return nil
}

// startOffset returns where reading a partition starts, per From, and its
// high watermark now.
func (k *Source) startOffset(topic string, p int32) (start, hwm int64, err error) {
	newest, err := k.endOffset(topic, p)
	if err != nil {
		return 0, 0, err
	}
	oldest := func() (int64, error) {
		o, err := k.client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return 0, fmt.Errorf("kafka: %s[%d]: start offset: %w", topic, p, err)
		}
		return o, nil
	}
	switch f := k.cfg.From; f.Kind {
	case FromNewest:
		return newest, newest, nil
	case FromOffset:
		o, err := oldest()
		if err != nil {
			return 0, 0, err
		}
		start = min(max(f.Offset, o), newest)
		if start != f.Offset {
			k.log.Warn("kafka: offset out of range, starting at the nearest", "topic", topic, "partition", p,
				"offset", f.Offset, "oldest", o, "newest", newest, "start", start)
		}
		return start, newest, nil
	case FromTime:
		o, err := k.client.GetOffset(topic, p, f.Time.UnixMilli())
		if err != nil {
			return 0, 0, fmt.Errorf("kafka: %s[%d]: offset at %v: %w", topic, p, f.Time, err)
		}
		if o < 0 { // no record that recent
			o = newest
		}
		return o, newest, nil
	default:
		o, err := oldest()
		return o, newest, err
	}
}

// readCommitted reports whether only committed records are read.
func (k *Source) readCommitted() bool {
	return k.client.Config().Consumer.IsolationLevel == sarama.ReadCommitted
}

// endOffset returns the end of a partition for the isolation level read:
// with read_committed, its last stable offset, below which no transaction
// is still open, and which --until-end stops at; else its high watermark.
// sarama's GetOffset asks for the high watermark whatever the level.
func (k *Source) endOffset(topic string, p int32) (int64, error) {
	o, err := k.listOffset(topic, p, sarama.OffsetNewest)
	if err != nil {
		return 0, fmt.Errorf("kafka: %s[%d]: end offset: %w", topic, p, err)
	}
	return o, nil
}

// stopOffset returns where reading a partition stops: with Until, at the
// first record at or after it, else at its end offset.
func (k *Source) stopOffset(topic string, p int32) (int64, error) {
	end, err := k.endOffset(topic, p)
	if err != nil || k.cfg.Until.IsZero() {
		return end, err
	}
	o, err := k.listOffset(topic, p, k.cfg.Until.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("kafka: %s[%d]: offset at %v (--until): %w", topic, p, k.cfg.Until.Format(time.RFC3339Nano), err)
	}
	if o < 0 { // no record that recent
		return end, nil
	}
	// A record at or after Until in a transaction still open is beyond
	// the last stable offset: reading stops there, as at the end.
	return min(o, end), nil
}

// listOffset asks the leader of a partition for an offset: at a time (Unix
// milliseconds: the first record at or after it, -1 if none), or
// sarama.OffsetNewest, at the isolation level read.
func (k *Source) listOffset(topic string, p int32, at int64) (int64, error) {
	leader, err := k.client.Leader(topic, p)
	if err != nil {
		return 0, err
	}
	req := sarama.NewOffsetRequest(Version)
	if k.readCommitted() {
		req.IsolationLevel = sarama.ReadCommitted
	}
	req.AddBlock(topic, p, at, 1)
	resp, err := leader.GetAvailableOffsets(req)
	if err != nil {
		return 0, err
	}
	b := resp.GetBlock(topic, p)
	switch {
	case b == nil:
		return 0, sarama.ErrIncompleteResponse
	case b.Err != sarama.ErrNoError:
		if errors.Is(b.Err, sarama.ErrNotLeaderForPartition) || errors.Is(b.Err, sarama.ErrLeaderNotAvailable) {
			k.client.RefreshMetadata(topic)
		}
		return 0, b.Err
	case len(b.Offsets) != 1:
		return 0, sarama.ErrIncompleteResponse
	}
	return b.Offsets[0], nil
}

// refreshHighWatermarks asks the leaders for the high watermarks of the
// partitions read, one request per broker. The consumer's own stop moving
// while the pipeline is stalled: sarama fetches nothing for a partition
// whose records are not taken.
func (k *Source) refreshHighWatermarks(c sarama.Client) {
	byLeader := make(map[*sarama.Broker][]topicPartition)
	for _, tp := range k.track.unbounded() {
		b, err := c.Leader(tp.topic, tp.part)
		if err != nil {
			continue // the watch and the consumer report unreachable brokers
		}
		byLeader[b] = append(byLeader[b], tp)
	}
	for b, tps := range byLeader {
		req := sarama.NewOffsetRequest(Version)
		if k.readCommitted() {
			req.IsolationLevel = sarama.ReadCommitted // lag to what can be read
		}
		for _, tp := range tps {
			req.AddBlock(tp.topic, tp.part, sarama.OffsetNewest, 1)
		}
		resp, err := b.GetAvailableOffsets(req)
		if err != nil {
			k.log.Debug("kafka: high watermarks", "broker", b.Addr(), "err", err)
			continue
		}
		for _, tp := range tps {
			if blk := resp.GetBlock(tp.topic, tp.part); blk != nil && blk.Err == sarama.ErrNoError && len(blk.Offsets) == 1 {
				k.track.highWatermark(tp, blk.Offsets[0])
			}
		}
	}
}
