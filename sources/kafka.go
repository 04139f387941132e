package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/internal/envelope"
	"github.com/batchpipe/batchpipe/internal/kafkaconn"
	"github.com/batchpipe/batchpipe/monitor"
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

// KafkaConfig says what the Kafka source reads. The zero value of a field
// means its default, given beside it.
type KafkaConfig struct {
	Topics []string
	// Partitions limits reading to these partitions of every topic; nil:
	// all. Not with Group, where the group assigns partitions.
	Partitions []int32
	// From is where reading starts; with Group, only in partitions where
	// the group has no committed offset.
	From From
	// Group, if set, is the consumer group to read as. Offsets are committed
	// only once every record below them is delivered or dead-lettered.
	Group string
	// UntilEnd captures the end offset of each partition when it is
	// assigned; once every record below it has been sent, Run returns nil.
	UntilEnd bool
	// Until, if set, ends each partition at its first record with a
	// timestamp at or after it, as the broker's timestamp index finds it
	// (or at the end offset, if none), once, at start; then as UntilEnd,
	// which it implies. A partition with no record before it is done at
	// once and commits nothing.
	Until time.Time
	// Limit stops reading after this many records; 0: no limit.
	Limit int64
	// Envelope makes each record a JSON object with its metadata.
	Envelope bool
	// CommitInterval is how often delivered offsets are committed with
	// Group; they are also committed at rebalance and in Close. Default 1s.
	CommitInterval time.Duration
	// Timeout is how long the brokers may stay unreachable, or the group
	// assign no partitions, before Run fails. Default 30s.
	Timeout time.Duration
	// Logger gets rebalances and broker trouble; default: silent.
	Logger *slog.Logger
	// ExactlyOnce stores each batch's cut in the group's offset metadata
	// before it is delivered (PlanBatch), and cuts the records read again
	// where it was stored (see kafka_cuts.go). Needs Group.
	ExactlyOnce bool
	// OffsetsInSink says the sink commits the group's offsets itself, in
	// the Kafka transaction that writes a batch (exactly once to Kafka).
	// The source then commits none: a commit of its own could only repeat
	// an offset a transaction committed (delivered records are acked after
	// their transaction), or, sent in the moment between a transaction
	// committing further and its batch being acked, move the offset back,
	// so that a crash then would write those records twice. Delivered
	// offsets count as committed. Only a tail of transaction markers or
	// aborted records after the last record, which no transaction passes,
	// is committed by the source, while no further record is handed on
	// (see tracker.gateTails). Needs Group.
	OffsetsInSink bool
}

// maxChunk bounds the records sent to the pipeline at once.
const maxChunk = 2048

// Kafka reads records from Kafka: without a group, every partition of its
// topics from a chosen offset; with one, the partitions the group assigns,
// committing offsets as records are delivered.
//
// The client, the readers and the group session live from OpenKafka to
// Close, longer than Run: after Run returns, the pipeline still delivers
// what it read, and Close commits the offsets of what was delivered.
type Kafka struct {
	cfg    KafkaConfig
	client sarama.Client
	log    *slog.Logger
	track  *tracker

	life   context.Context // done in Close
	stop   context.CancelFunc
	chunks chan chunk    // partition readers → Run
	change chan struct{} // an assignment changed: Run checks for the end
	fatal  chan error    // buffer of one: the first error that stops Run
	ends   map[topicPartition]int64
	wg     sync.WaitGroup
	once   sync.Once // starts reading, at the first Run

	// probe is a client of its own for the watch and the drain's checks:
	// a broker answers a connection's requests in order, and the main
	// client's connection to the coordinator may be held by a join for up
	// to the rebalance timeout. Set by the watch; nil until it connects.
	probe atomic.Pointer[sarama.Client]

	reachedEnd atomic.Bool
	// othersLag is, with UntilEnd and a group, the lag of the partitions
	// this member does not hold, as last known: the group's offsets
	// against the end offsets.
	othersLag atomic.Pointer[map[topicPartition]int64]
	handed    atomic.Int64 // records Run handed to the pipeline

	cuts       *cutStore // with ExactlyOnce
	cutsStored atomic.Int64

	// Without a group.
	consumer sarama.Consumer
	parts    []*partState

	// With a group. mu serialises commits with the session changes.
	group    sarama.ConsumerGroup
	mu       sync.Mutex
	sess     sarama.ConsumerGroupSession
	closing  bool
	sessions atomic.Int64 // sessions set up so far
	// coop: the group rebalances cooperatively (KIP-429). A session then
	// lasts across rebalances; Setup and Cleanup run once, and a partition
	// added or revoked is taken or let go in ConsumeClaim, alone.
	coop bool

	// What a group member says of itself (GroupState).
	generation atomic.Int32
	rebalances atomic.Int64
	pausedNs   atomic.Int64 // time reading stood still for rebalances
	pausedAt   time.Time    // the eager revoke that began a pause; k.mu

	closeOnce sync.Once     // starts close
	closed    chan struct{} // close is over; closeErr is set
	closeErr  error
	finalDone chan struct{} // the final commit is over; finalErr is set
	finalErr  error
	unjoined  bool // no session at the final commit; set before finalDone
}

var (
	_ batcher.Source     = (*Kafka)(nil)
	_ batcher.Acker      = (*Kafka)(nil)
	_ batcher.Locator    = (*Kafka)(nil)
	_ batcher.Withdrawer = (*Kafka)(nil)
)

// A chunk is records of one partition, in offset order. With toEnd,
// nothing is left to read below the partition's end offset after them,
// even if no record sits at end-1: a transaction marker may, or the
// records there were compacted away or deleted.
//
// With skipTo (no records, no end offset), nothing is left to read below
// it: the offsets from the last record sent hold transaction markers or
// aborted records, and the commit may pass them once all before is done.
type chunk struct {
	st     *partState
	recs   []batcher.Record
	toEnd  bool
	skipTo int64
}

// OpenKafka checks that the topics (and partitions) exist and, without a
// group, finds where each partition starts and ends. Its errors are the
// user's to fix. The client stays the caller's to close, after Close.
func OpenKafka(client sarama.Client, cfg KafkaConfig) (*Kafka, error) {
	if len(cfg.Topics) == 0 {
		return nil, errors.New("kafka: no topic given")
	}
	if cfg.Group != "" && cfg.Partitions != nil {
		return nil, errors.New("kafka: partitions are assigned by the group: give a group or partitions, not both")
	}
	if cfg.OffsetsInSink && (cfg.Group == "" || cfg.ExactlyOnce) {
		return nil, errors.New("kafka: offsets committed by the sink need a group, and no cuts of the source's own")
	}
	if cfg.ExactlyOnce && cfg.Group == "" {
		return nil, errors.New("kafka: exactly once needs a group: the cuts are stored with its offsets")
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if !cfg.Until.IsZero() {
		cfg.UntilEnd = true
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	k := &Kafka{
		cfg:    cfg,
		client: client,
		log:    cfg.Logger,
		track:  newTracker(),
		chunks: make(chan chunk),
		change: make(chan struct{}, 1),
		fatal:  make(chan error, 1),
		ends:   make(map[topicPartition]int64),

		closed:    make(chan struct{}),
		finalDone: make(chan struct{}),
	}
	k.life, k.stop = context.WithCancel(context.Background())
	if cfg.ExactlyOnce {
		k.cuts = newCutStore()
	}

	for _, topic := range cfg.Topics {
		parts, err := client.Partitions(topic)
		if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return nil, fmt.Errorf("kafka: topic %q does not exist", topic)
		}
		if err != nil {
			return nil, fmt.Errorf("kafka: topic %q: %w", topic, err)
		}
		if cfg.Group != "" {
			if cfg.UntilEnd {
				// The group's drain is judged against one set of end
				// offsets, taken now, for every partition, read here or
				// by another member.
				for _, p := range parts {
					e, err := k.stopOffset(topic, p)
					if err != nil {
						return nil, err
					}
					k.ends[topicPartition{topic, p}] = e
				}
			}
			continue
		}
		if cfg.Partitions != nil {
			have := make(map[int32]bool, len(parts))
			for _, p := range parts {
				have[p] = true
			}
			for _, p := range cfg.Partitions {
				if !have[p] {
					return nil, fmt.Errorf("kafka: topic %q has no partition %d (it has %d)", topic, p, len(parts))
				}
			}
			parts = cfg.Partitions
		}
		for _, p := range parts {
			start, hwm, err := k.startOffset(topic, p)
			if err != nil {
				return nil, err
			}
			end := int64(-1)
			if cfg.UntilEnd {
				end = hwm
			}
			if !cfg.Until.IsZero() {
				if end, err = k.stopOffset(topic, p); err != nil {
					return nil, err
				}
			}
			k.parts = append(k.parts, k.track.assign(topic, p, start, end, hwm))
			k.log.Debug("kafka: reading", "partition", partName(topic, p, start, end))
		}
	}
	if cfg.Group != "" && cfg.UntilEnd {
		k.initOthersLag()
	}
	if cfg.Group == "" {
		k.track.activate()
	} else {
		group, err := sarama.NewConsumerGroupFromClient(cfg.Group, client)
		if err != nil {
			return nil, fmt.Errorf("kafka: group %q: %w", cfg.Group, err)
		}
		k.group = group
		for _, s := range client.Config().Consumer.Group.Rebalance.GroupStrategies {
			k.coop = s.Name() == sarama.CooperativeStickyBalanceStrategyName
		}
	}
	return k, nil
}

// startOffset returns where reading a partition starts, per From, and its
// high watermark now.
func (k *Kafka) startOffset(topic string, p int32) (start, hwm int64, err error) {
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
func (k *Kafka) readCommitted() bool {
	return k.client.Config().Consumer.IsolationLevel == sarama.ReadCommitted
}

// endOffset returns the end of a partition for the isolation level read:
// with read_committed, its last stable offset, below which no transaction
// is still open, and which --until-end stops at; else its high watermark.
// sarama's GetOffset asks for the high watermark whatever the level.
func (k *Kafka) endOffset(topic string, p int32) (int64, error) {
	o, err := k.listOffset(topic, p, sarama.OffsetNewest)
	if err != nil {
		return 0, fmt.Errorf("kafka: %s[%d]: end offset: %w", topic, p, err)
	}
	return o, nil
}

// stopOffset returns where reading a partition stops: with Until, at the
// first record at or after it, else at its end offset.
func (k *Kafka) stopOffset(topic string, p int32) (int64, error) {
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
func (k *Kafka) listOffset(topic string, p int32, at int64) (int64, error) {
	leader, err := k.client.Leader(topic, p)
	if err != nil {
		return 0, err
	}
	req := sarama.NewOffsetRequest(kafkaconn.Version)
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

// Run sends the records read to out until ctx is done, reading fails, or
// with UntilEnd or Limit, reading is complete. Readers keep running after
// it returns, until Close; nothing is sent on out after it returns.
func (k *Kafka) Run(ctx context.Context, out chan<- []batcher.Record) error {
	k.once.Do(k.start)
	var (
		waitFrom time.Time // since when this member's partitions are drained
		poll     *time.Timer
		pollC    <-chan time.Time
	)
	defer func() {
		if poll != nil {
			poll.Stop()
		}
	}()
	for {
		if k.cfg.UntilEnd && k.track.drain() {
			if k.group == nil {
				k.reachedEnd.Store(true)
				return nil
			}
			// Drained means drained for the whole group: the partitions
			// other members hold, or a dead one held until its session
			// timed out, are waited for.
			if waitFrom.IsZero() {
				waitFrom = time.Now()
			}
			short, err := k.groupShort()
			if err == nil && len(short) == 0 {
				k.reachedEnd.Store(true)
				return nil
			}
			if waited := time.Since(waitFrom); waited >= k.cfg.Timeout {
				return k.notDrained(short, err, waited)
			}
			if poll == nil {
				poll = time.NewTimer(groupPoll)
			} else {
				poll.Reset(groupPoll)
			}
			pollC = poll.C
		} else {
			waitFrom, pollC = time.Time{}, nil
		}
		sent := k.handed.Load()
		if k.cfg.Limit > 0 && sent >= k.cfg.Limit {
			return nil
		}
		select {
		case c := <-k.chunks:
			recs := c.recs
			if k.cfg.Limit > 0 {
				recs = recs[:min(int64(len(recs)), k.cfg.Limit-sent)]
			}
			// Tracked before it is sent, so that no ack can come first.
			// Records never sent stay pending: no commit passes them.
			ok, wait := k.track.sendOrWait(c.st, recs)
			for wait != nil { // a commit of the partition's tail is being sent
				select {
				case <-wait:
				case <-ctx.Done():
					return ctx.Err()
				}
				ok, wait = k.track.sendOrWait(c.st, recs)
			}
			if !ok {
				continue // its partition was revoked: the new owner reads it
			}
			if c.toEnd && len(recs) == len(c.recs) {
				k.track.readToEnd(c.st)
			}
			if c.skipTo > 0 {
				k.track.skip(c.st, c.skipTo)
			}
			if k.cuts != nil {
				k.cuts.markPlanned(c.st, recs)
			}
			if len(recs) == 0 {
				continue
			}
			select {
			case out <- recs:
				k.handed.Add(int64(len(recs)))
			case <-ctx.Done():
				return ctx.Err()
			}
		case <-k.change:
		case <-pollC:
		case err := <-k.fatal:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// groupPoll is how often a member that drained its partitions asks for
// the group's offsets of the others.
const groupPoll = 250 * time.Millisecond

// groupShort returns the partitions of the topics not held by this member
// whose group offset is short of its end offset, and records their lag.
func (k *Kafka) groupShort() ([]commit, error) {
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
func (k *Kafka) notDrained(short []commit, err error, waited time.Duration) error {
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
func (k *Kafka) setOthersLag(ends map[topicPartition]int64, short []commit) {
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
func (k *Kafka) initOthersLag() {
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

// LocatesErrors reports that Run's errors name their topic and partition:
// a byte offset into the records read would mean nothing.
func (k *Kafka) LocatesErrors() bool { return true }

// Ack marks the records of b delivered or dead-lettered.
func (k *Kafka) Ack(b *batcher.Batch) {
	k.track.ack(b)
	if k.cuts != nil {
		k.cuts.acked()
	}
}

// Withdraw takes back the records of b whose partitions a rebalance is
// taking away: their new owner reads them from the last commit, so
// delivering them here too would deliver them twice.
func (k *Kafka) Withdraw(b *batcher.Batch) []int { return k.track.withdraw(b.Seq, b) }

// Owns reports whether b's records are still this member's to deliver:
// their partition is assigned to it, and they were read under the current
// assignment. A sink that fences other producers of the partition (exactly
// once to Kafka) asks before it does.
func (k *Kafka) Owns(b *batcher.Batch) bool {
	span, ok := b.Span()
	if !ok {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.track.get(span.Topic, span.Partition)
	return k.sess != nil && !k.closing && st != nil && k.track.holds(st, b.Meta(0))
}

// Settled notes that no further attempt will be made at batch seq: a
// rebalance waits for that before it commits and lets go.
func (k *Kafka) Settled(seq int64) { k.track.settle(seq) }

// Lag returns, per topic, the records not yet delivered (or dead-lettered)
// in the partitions this process reads: up to the end offsets with
// UntilEnd, else up to the latest high watermark, which the consumer
// brings with each fetch and the broker watch refreshes while it fetches
// nothing (the pipeline stalled).
func (k *Kafka) Lag() map[string]int64 {
	var others map[topicPartition]int64
	if o := k.othersLag.Load(); o != nil {
		others = *o
	}
	return k.track.lag(others)
}

// PartitionLag returns Lag per partition, for metrics.
func (k *Kafka) PartitionLag() []monitor.PartitionLag { return k.track.partLag() }

// Read returns how many records were handed to the pipeline.
func (k *Kafka) Read() int64 { return k.handed.Load() }

// ReachedEnd reports whether Run returned because, with UntilEnd, every
// record below the end offsets was read.
func (k *Kafka) ReachedEnd() bool { return k.reachedEnd.Load() }

// CheckDrain returns, after Close, an error if Run drained the partitions
// (UntilEnd, with a group) and the group's offset of one this process still
// held at the end is short of its end offset: a rebalance gave it back
// while its last records were delivered, and they were not committed. The
// next run reads them again. A partition the rebalance gave to another
// member is that member's to finish.
func (k *Kafka) CheckDrain() error {
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

// start starts the readers: a partition consumer per partition, or the
// group session loop and its committer; and the broker watch.
func (k *Kafka) start() {
	k.wg.Go(k.watch)
	if k.group != nil {
		k.wg.Go(k.consumeGroup)
		k.wg.Go(k.commitLoop)
		k.wg.Go(func() {
			for err := range k.group.Errors() {
				// A partition read past retention stops: as without a group.
				var cerr *sarama.ConsumerError
				if errors.As(err, &cerr) && errors.Is(cerr.Err, sarama.ErrOffsetOutOfRange) {
					k.fail(fmt.Errorf("kafka: %s[%d]: %w: records were deleted before they were read",
						cerr.Topic, cerr.Partition, cerr.Err))
					continue
				}
				k.log.Warn("kafka: consumer group", "group", k.cfg.Group, "err", err)
			}
		})
		return
	}
	consumer, err := sarama.NewConsumerFromClient(k.client)
	if err != nil {
		k.fail(fmt.Errorf("kafka: consumer: %w", err))
		return
	}
	k.consumer = consumer
	for _, st := range k.parts {
		if st.complete() {
			continue // nothing below its end offset: nothing to read
		}
		pc, err := consumer.ConsumePartition(st.tp.topic, st.tp.part, st.next)
		if err != nil {
			k.fail(fmt.Errorf("kafka: %s[%d]: consume from offset %d: %w", st.tp.topic, st.tp.part, st.next, err))
			return
		}
		k.wg.Go(func() {
			k.read(k.life, st, pc.Messages(), pc.HighWaterMarkOffset)
			pc.AsyncClose()
		})
		k.wg.Go(func() {
			for err := range pc.Errors() {
				if errors.Is(err.Err, sarama.ErrOffsetOutOfRange) {
					k.fail(fmt.Errorf("kafka: %s[%d]: %w: records were deleted before they were read",
						err.Topic, err.Partition, err.Err))
					continue
				}
				k.log.Warn("kafka: read", "topic", err.Topic, "partition", err.Partition, "err", err.Err)
			}
		})
	}
}

// tailWait is how long a partition read up to an end offset may wait for
// a record before its leader is asked whether any is left below the end.
const tailWait = 500 * time.Millisecond

// read sends the records of one partition to Run in chunks of what is
// ready, until the partition's end offset, msgs closes or ctx is done.
func (k *Kafka) read(ctx context.Context, st *partState, msgs <-chan *sarama.ConsumerMessage, hwm func() int64) {
	k.track.follow(st, hwm)
	end := st.end    // set once, at assignment
	next := st.start // the offset after the last record seen
	// sarama skips transaction markers, aborted records and compacted
	// offsets without a word: if the last offsets below the end are such,
	// no record ever says the end was reached; without an end, the offset
	// committed would stay short of the high watermark for good, a lag
	// that never clears. So an idle partition asks.
	idle := time.NewTimer(tailWait)
	defer idle.Stop()
	var asked [2]int64 // next and the high watermark of the last fruitless ask
	for {
		var m *sarama.ConsumerMessage
		var ok bool
		select {
		case m, ok = <-msgs:
			if !ok {
				return
			}
		case <-idle.C:
			if end < 0 {
				if to := k.skipTail(st, next, hwm(), &asked); to > next {
					select {
					case k.chunks <- chunk{st: st, skipTo: to}:
						next = to
					case <-ctx.Done():
						return
					}
				}
				idle.Reset(tailWait)
				continue
			}
			empty, err := k.nothingBelow(st.tp, next, end)
			if err != nil {
				k.log.Debug("kafka: look past the last record read", "topic", st.tp.topic, "partition", st.tp.part,
					"offset", next, "err", err)
			}
			if !empty {
				idle.Reset(tailWait)
				continue
			}
			select {
			case k.chunks <- chunk{st: st, toEnd: true}:
			case <-ctx.Done():
			}
			return
		case <-ctx.Done():
			return
		}
		n := min(len(msgs)+1, maxChunk)
		c := newChunk(n, k.cfg.Envelope)
		c.assignment = st.n
		finished := false
	fill:
		for {
			if end >= 0 && m.Offset >= end {
				finished = true // the offsets before it hold no record
				break
			}
			c.add(m)
			next = m.Offset + 1
			if end >= 0 && next >= end {
				finished = true
				break
			}
			if len(c.recs) == n {
				break
			}
			select {
			case m, ok = <-msgs:
				if !ok {
					break fill
				}
			default:
				break fill
			}
		}
		if len(c.recs) > 0 || finished {
			c.finish()
			select {
			case k.chunks <- chunk{st: st, recs: c.recs, toEnd: finished}:
			case <-ctx.Done():
				return
			}
		}
		if finished || !ok {
			return
		}
		idle.Reset(tailWait)
	}
}

// skipTail returns how far past next, up to the high watermark hwm, a
// partition read without an end holds nothing to read; next if nothing
// or in doubt. It asks the leader once per next and hwm: until either
// moves, the answer stays (an open transaction holds the last stable
// offset back; its end moves the high watermark).
func (k *Kafka) skipTail(st *partState, next, hwm int64, asked *[2]int64) int64 {
	if hwm <= next || *asked == [2]int64{next, hwm} {
		return next
	}
	to, err := k.emptyTo(st.tp, next, hwm)
	if err != nil {
		k.log.Debug("kafka: look past the last record read", "topic", st.tp.topic, "partition", st.tp.part,
			"offset", next, "err", err)
		return next // asked again at the next idle tick
	}
	if to == next {
		*asked = [2]int64{next, hwm}
	}
	return to
}

// nothingBelow reports whether a partition holds no record to read from
// offset from up to end, asking its leader directly: the offsets between
// may hold only transaction markers, or records compacted away. It reports
// false when in doubt; a record the consumer has yet to deliver is for the
// reader to see.
func (k *Kafka) nothingBelow(tp topicPartition, from, end int64) (bool, error) {
	to, err := k.emptyTo(tp, from, end)
	return to >= end, err
}

// emptyTo returns how far from offset from, up to end at most, a partition
// holds no record to read, asking its leader directly: from itself if a
// record is there, or in doubt; past transaction markers, records of
// aborted transactions (read_committed) and offsets compacted away.
func (k *Kafka) emptyTo(tp topicPartition, from, end int64) (int64, error) {
	if from >= end {
		return from, nil
	}
	leader, err := k.client.Leader(tp.topic, tp.part)
	if err != nil {
		return from, err
	}
	committed := k.readCommitted()
	seen := from // every offset from from to seen holds no record to read
	// A long run of markers takes several fetches, each from where the
	// last one's whole batches ended.
	for range maxProbes {
		// Version 10 (Kafka 2.1) has all a probe needs (sarama's consumer
		// sends 11, for rack awareness), at the consumer's isolation
		// level: under read_committed, records of aborted transactions
		// are skipped, as the consumer skips them.
		req := &sarama.FetchRequest{Version: 10, MaxBytes: probeBytes, Isolation: sarama.ReadUncommitted, SessionEpoch: -1}
		if committed {
			req.Isolation = sarama.ReadCommitted
		}
		req.AddBlock(tp.topic, tp.part, seen, probeBytes, -1)
		resp, err := leader.Fetch(req)
		if err != nil {
			return seen, err
		}
		b := resp.GetBlock(tp.topic, tp.part)
		if b == nil {
			return seen, sarama.ErrIncompleteResponse
		}
		if b.Err != sarama.ErrNoError {
			// Out of range too: records deleted before they were read are
			// the consumer's to report.
			return seen, b.Err
		}
		at := seen
		// As sarama's consumer does: a producer's batches are aborted from
		// the first offset of an aborted transaction to its abort marker.
		aborts := b.AbortedTransactions
		sort.Slice(aborts, func(i, j int) bool { return aborts[i].FirstOffset < aborts[j].FirstOffset })
		aborted := make(map[int64]bool)
		for _, rs := range b.RecordsSet {
			rb := rs.RecordBatch
			if rb == nil {
				return seen, nil // the old message format has no markers
			}
			if rb.PartialTrailingRecord {
				break // cut short by probeBytes: fetch it again
			}
			for len(aborts) > 0 && aborts[0].FirstOffset <= rb.LastOffset() {
				aborted[aborts[0].ProducerID] = true
				aborts = aborts[1:]
			}
			skip := rb.Control || committed && rb.IsTransactional && aborted[rb.ProducerID]
			if rb.Control && len(rb.Records) == 1 && isAbortMarker(rb.Records[0]) {
				delete(aborted, rb.ProducerID)
			}
			if !skip {
				for _, r := range rb.Records {
					if rb.FirstOffset+r.OffsetDelta >= seen {
						return seen, nil
					}
				}
			}
			if seen = max(seen, rb.LastOffset()+1); seen >= end {
				return end, nil
			}
		}
		if seen == at {
			return seen, nil // nothing whole came back: in doubt
		}
	}
	return seen, nil
}

// isAbortMarker reports whether a control record marks the abort of a
// transaction: its key is version (int16) then type (int16), 0 for abort.
func isAbortMarker(r *sarama.Record) bool {
	return len(r.Key) >= 4 && r.Key[2] == 0 && r.Key[3] == 0
}

// maxProbes bounds the fetches of one nothingBelow: 4 MiB of markers.
const maxProbes = 64

// probeBytes bounds what nothingBelow fetches: a few markers, or the start
// of the next batch of records.
const probeBytes = 64 << 10

// refreshHighWatermarks asks the leaders for the high watermarks of the
// partitions read, one request per broker. The consumer's own stop moving
// while the pipeline is stalled: sarama fetches nothing for a partition
// whose records are not taken.
func (k *Kafka) refreshHighWatermarks(c sarama.Client) {
	byLeader := make(map[*sarama.Broker][]topicPartition)
	for _, tp := range k.track.unbounded() {
		b, err := c.Leader(tp.topic, tp.part)
		if err != nil {
			continue // the watch and the consumer report unreachable brokers
		}
		byLeader[b] = append(byLeader[b], tp)
	}
	for b, tps := range byLeader {
		req := sarama.NewOffsetRequest(kafkaconn.Version)
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

// chunkBuilder turns consumer messages into records. Metadata is allocated
// per chunk, not per record; so is the envelope buffer.
type chunkBuilder struct {
	recs     []batcher.Record
	metas    []batcher.Meta
	envelope bool
	buf      []byte
	ends     []int

	assignment int64 // of the partition read: its state's number
}

func newChunk(n int, envelope bool) *chunkBuilder {
	return &chunkBuilder{
		recs:     make([]batcher.Record, 0, n),
		metas:    make([]batcher.Meta, 0, n),
		envelope: envelope,
	}
}

func (c *chunkBuilder) add(m *sarama.ConsumerMessage) {
	c.metas = append(c.metas, batcher.Meta{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		Key:       m.Key,
		Timestamp: m.Timestamp,
	})
	meta := &c.metas[len(c.metas)-1]
	meta.Assignment = c.assignment
	if len(m.Headers) > 0 {
		meta.Headers = make([]batcher.Header, len(m.Headers))
		for i, h := range m.Headers {
			meta.Headers[i] = batcher.Header{Key: string(h.Key), Value: h.Value}
		}
	}
	if !c.envelope {
		c.recs = append(c.recs, batcher.Record{Data: m.Value, Meta: meta})
		return
	}
	c.buf = envelope.Append(c.buf, meta, m.Key, m.Value, m.Key == nil, m.Value == nil)
	c.ends = append(c.ends, len(c.buf))
	c.recs = append(c.recs, batcher.Record{Meta: meta})
}

// finish points the records at their envelopes, now that the buffer has
// stopped moving.
func (c *chunkBuilder) finish() {
	if !c.envelope {
		return
	}
	start := 0
	for i, end := range c.ends {
		c.recs[i].Data = c.buf[start:end:end]
		start = end
	}
}

// fail stops Run with err, unless it already stopped with another.
func (k *Kafka) fail(err error) {
	select {
	case k.fatal <- err:
	default:
	}
}

// watch fails Run when no broker has answered for Timeout. Without
// UntilEnd, it also refreshes the high watermarks that lag is measured to.
// A request to a broker that stopped answering waits up to the read
// timeout, longer than the rebalance timeout: the watch does not wait for
// it to tell how long the brokers have been silent.
func (k *Kafka) watch() {
	every := min(max(k.cfg.Timeout/4, 100*time.Millisecond), 5*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	last := time.Now()
	warned := false
	answers := make(chan error, 1) // the refresh in progress, if any
	asking := false
	var lastErr error
	for {
		select {
		case <-k.life.Done():
			return
		case err := <-answers:
			asking = false
			if err == nil {
				if warned {
					k.log.Warn("kafka: brokers reachable again")
					warned = false
				}
				last = time.Now()
				continue
			}
			lastErr = err
			if !warned && k.life.Err() == nil {
				k.log.Warn("kafka: brokers unreachable, retrying", "err", err)
				warned = true
			}
		case <-t.C:
			if !asking {
				asking = true
				go func() {
					c, err := k.probeClient()
					if err == nil {
						err = c.RefreshMetadata(k.cfg.Topics...)
					}
					if err == nil && !k.cfg.UntilEnd {
						k.refreshHighWatermarks(c)
					}
					answers <- err
				}()
			}
		}
		if down := time.Since(last); down >= k.cfg.Timeout {
			err := lastErr
			if err == nil {
				err = errors.New("no answer")
			}
			k.fail(fmt.Errorf("kafka: no broker answered for %v (--kafka-timeout): %w", down.Round(time.Second), err))
			return
		}
	}
}

// probeClient returns the probe client, connecting it first if need be.
func (k *Kafka) probeClient() (sarama.Client, error) {
	if c := k.probe.Load(); c != nil {
		return *c, nil
	}
	var addrs []string
	for _, b := range k.client.Brokers() {
		addrs = append(addrs, b.Addr())
	}
	c, err := sarama.NewClient(addrs, k.client.Config())
	if err != nil {
		return nil, err
	}
	if !k.probe.CompareAndSwap(nil, &c) {
		c.Close()
		return *k.probe.Load(), nil
	}
	if k.life.Err() != nil { // closed meanwhile
		c.Close()
	}
	return c, nil
}

// Close commits the offsets of what was delivered (with a group), leaves
// the group and stops reading. Call it once the pipeline has delivered
// everything it will; the client stays open.
func (k *Kafka) Close() error { return k.Shutdown(context.Background()) }

// Shutdown is Close that stops waiting once ctx is done: a broker that
// stopped answering would hold each request for the client's read timeout.
// Closing then goes on in the background. The error says whether the final
// commit was made: without it, the records delivered since the last commit
// will be read again. Leaving the group or stopping the readers unfinished
// loses nothing and is only logged.
//
// A member of a group that holds no partitions (a signal came while it
// was joining) has nothing to commit or hand over: Shutdown returns once
// that is settled, without waiting to leave, which waits for a join under
// way to be answered (up to the rebalance timeout).
func (k *Kafka) Shutdown(ctx context.Context) error {
	k.closeOnce.Do(func() { go k.close() })
	final := k.finalDone // closed only with a group
wait:
	for {
		select {
		case <-k.closed:
			return k.closeErr
		case <-final:
			final = nil
			if k.finalErr == nil && k.unjoined {
				k.log.Debug("kafka: not waiting to leave the group: this member holds no partitions", "group", k.cfg.Group)
				return nil
			}
		case <-ctx.Done():
			break wait
		}
	}
	select {
	case <-k.closed: // both were ready
		return k.closeErr
	default:
	}
	if k.group == nil {
		return nil
	}
	select {
	case <-k.finalDone:
		if k.finalErr != nil {
			return k.finalErr
		}
		k.log.Warn("kafka: gave up leaving the group; its other members wait a session timeout for the partitions",
			"group", k.cfg.Group, "err", context.Cause(ctx))
		return nil
	default:
		return fmt.Errorf("kafka: group %q: final commit abandoned: %w; the offsets of delivered records may not be committed, and those records will be read again",
			k.cfg.Group, context.Cause(ctx))
	}
}

// close does the work of Close; closed is closed once it is over.
func (k *Kafka) close() {
	defer close(k.closed)
	var err error
	if k.group != nil {
		k.mu.Lock()
		k.closing = true
		k.unjoined = k.sess == nil
		if k.sess != nil {
			if err = k.commitLocked(k.sess); err != nil {
				err = fmt.Errorf("%w; delivered records not committed will be read again", err)
			}
		}
		k.closeCutsConn()
		k.mu.Unlock()
		k.finalErr = err
		close(k.finalDone)
	}
	k.stop()
	if k.group != nil {
		// Not leaving loses nothing: the others wait a session timeout.
		if cerr := k.group.Close(); cerr != nil {
			k.log.Warn("kafka: leave group; its other members wait a session timeout for the partitions",
				"group", k.cfg.Group, "err", cerr)
		}
	}
	k.wg.Wait()
	if k.consumer != nil {
		k.consumer.Close()
	}
	if c := k.probe.Load(); c != nil {
		(*c).Close()
	}
	k.closeErr = err
}

// consumeGroup keeps a session of the group going until Close: a session
// ends at every rebalance. A join the group refuses for good fails Run at
// once; other errors are retried until no partitions have been assigned
// for Timeout.
func (k *Kafka) consumeGroup() {
	var wait *time.Timer
	unassigned := time.Now() // since when no partitions have been assigned
	for k.life.Err() == nil {
		sessions := k.sessions.Load()
		err := k.group.Consume(k.life, k.cfg.Topics, groupHandler{k})
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
				err = &StartError{err}
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

// A StartError is a Kafka error found before anything was read that
// retrying cannot mend: a setting or a permission for the user to fix; or
// a static member fenced by another started with its instance id.
type StartError struct{ Err error }

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// refusal says what to do about a join error the group will repeat however
// often it is retried, as Kafka's own consumer judges them; "" for others.
func (k *Kafka) refusal(err error) string {
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

// commitLoop commits delivered offsets every CommitInterval.
func (k *Kafka) commitLoop() {
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

// groupHandler is the Kafka source as sarama's group handler.
type groupHandler struct{ k *Kafka }

// Setup finds where each assigned partition starts: the group's committed
// offset, or From where there is none.
func (h groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	k := h.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, err := k.assignLocked(sess, sess.Claims(), true); err != nil {
		return err
	}
	k.track.activate()
	k.sess = sess
	k.sessions.Add(1)
	k.noteGeneration(sess.GenerationID())
	if !k.pausedAt.IsZero() {
		k.pausedNs.Add(int64(time.Since(k.pausedAt)))
		k.pausedAt = time.Time{}
	}
	k.changed()
	return nil
}

// assignLocked starts tracking claims from where each starts: the group's
// committed offset, or From where there is none. With mark, sarama has yet
// to start reading them, and is told where. k.mu is held.
func (k *Kafka) assignLocked(sess sarama.ConsumerGroupSession, claims map[string][]int32, mark bool) (map[topicPartition]*partState, error) {
	committed, err := k.fetchCommitted(claims)
	if err != nil {
		return nil, err
	}
	var assigned []string
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
			assigned = append(assigned, partName(topic, p, start, end))
		}
	}
	if err := k.loadCuts(states); err != nil {
		return nil, err
	}
	k.log.Debug("kafka: assigned", "group", k.cfg.Group, "generation", sess.GenerationID(),
		"count", len(assigned), "partitions", strings.Join(assigned, " "))
	return states, nil
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
func (k *Kafka) consumeCoop(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	tp := topicPartition{claim.Topic(), claim.Partition()}
	st := k.track.live(tp.topic, tp.part)
	if st == nil {
		k.mu.Lock()
		states, err := k.assignLocked(sess, map[string][]int32{tp.topic: {tp.part}}, false)
		k.noteGeneration(sess.GenerationID())
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
	if !k.closing {
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
func (k *Kafka) noteGeneration(g int32) {
	if old := k.generation.Swap(g); old != g && old != 0 {
		k.rebalances.Add(1)
	}
}

// GroupState says what this member of the group holds and has been
// through; the zero value without a group.
func (k *Kafka) GroupState() monitor.GroupState {
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
func (k *Kafka) waitInFlight() {
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

func (k *Kafka) changed() {
	select {
	case k.change <- struct{}{}:
	default:
	}
}

// fetchCommitted returns the group's committed offsets for the claims; -1
// where there is none.
func (k *Kafka) fetchCommitted(claims map[string][]int32) (map[topicPartition]int64, error) {
	return k.fetchCommittedWith(k.client, claims)
}

func (k *Kafka) fetchCommittedWith(client sarama.Client, claims map[string][]int32) (map[topicPartition]int64, error) {
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
func (k *Kafka) commitLocked(sess sarama.ConsumerGroupSession) error {
	cs := k.track.commits()
	if len(cs) == 0 {
		return nil
	}
	if k.cfg.OffsetsInSink {
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
// one sarama's own offset manager uses at kafkaconn.Version, the only
// version spoken; a static member names its instance, or is fenced.
func (k *Kafka) newCommitRequest(sess sarama.ConsumerGroupSession) *sarama.OffsetCommitRequest {
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

// partName describes a partition being read: topic[p]:start-end.
func partName(topic string, p int32, start, end int64) string {
	if end < 0 {
		return fmt.Sprintf("%s[%d]:%d-", topic, p, start)
	}
	return fmt.Sprintf("%s[%d]:%d-%d", topic, p, start, end)
}

func sortedKeys(m map[string][]int32) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
