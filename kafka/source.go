package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/monitor"
)

// SourceConfig says what the Kafka source reads. The zero value of a field
// means its default, given beside it.
type SourceConfig struct {
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
	// before it is delivered (plan), and cuts the records read again
	// where it was stored (see cuts.go). Needs Group.
	ExactlyOnce bool
	// offsetsInSink says the sink commits the group's offsets itself, in
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
	offsetsInSink bool
}

// maxChunk bounds the records sent to the pipeline at once.
const maxChunk = 2048

// Kafka reads records from Kafka: without a group, every partition of its
// topics from a chosen offset; with one, the partitions the group assigns,
// committing offsets as records are delivered.
//
// The client, the readers and the group session live from OpenSource to
// Close, longer than Run: after Run returns, the pipeline still delivers
// what it read, and Close commits the offsets of what was delivered.
type Source struct {
	cfg    SourceConfig
	client sarama.Client
	log    *slog.Logger
	track  *tracker

	life   context.Context // done in Close
	stop   context.CancelFunc
	chunks chan readChunk // partition readers → Run
	change chan struct{}  // an assignment changed: Run checks for the end
	fatal  chan error     // buffer of one: the first error that stops Run
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
	memberID string // of the last session: to leave with, unjoined
	closing  bool
	sessions atomic.Int64 // sessions set up so far
	// coop: the group rebalances cooperatively (KIP-429). A session then
	// lasts across rebalances; Setup and Cleanup run once, and a partition
	// added or revoked is taken or let go in ConsumeClaim, alone.
	coop bool
	// finalPending: close's commit waits for the group's next generation;
	// a partition revoked meanwhile commits as it goes. k.mu.
	finalPending bool

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
	unjoined  bool          // no session at the final commit; set before finalDone
	left      chan struct{} // leaving, if unjoined, is over (leaveUnjoined)
}

var (
	_ batcher.Source     = (*Source)(nil)
	_ batcher.Acker      = (*Source)(nil)
	_ batcher.Locator    = (*Source)(nil)
	_ batcher.Withdrawer = (*Source)(nil)
)

// A readChunk is records of one partition, in offset order. With toEnd,
// nothing is left to read below the partition's end offset after them,
// even if no record sits at end-1: a transaction marker may, or the
// records there were compacted away or deleted.
//
// With skipTo (no records, no end offset), nothing is left to read below
// it: the offsets from the last record sent hold transaction markers or
// aborted records, and the commit may pass them once all before is done.
type readChunk struct {
	st     *partState
	recs   []batcher.Record
	toEnd  bool
	skipTo int64
}

// OpenSource checks that the topics (and partitions) exist and, without a
// group, finds where each partition starts and ends. Its errors are the
// user's to fix. The client stays the caller's to close, after Close.
func OpenSource(client sarama.Client, cfg SourceConfig) (*Source, error) {
	if len(cfg.Topics) == 0 {
		return nil, errors.New("kafka: no topic given")
	}
	if cfg.Group != "" && cfg.Partitions != nil {
		return nil, errors.New("kafka: partitions are assigned by the group: give a group or partitions, not both")
	}
	if cfg.offsetsInSink && (cfg.Group == "" || cfg.ExactlyOnce) {
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
	k := &Source{
		cfg:    cfg,
		client: client,
		log:    cfg.Logger,
		track:  newTracker(),
		chunks: make(chan readChunk),
		change: make(chan struct{}, 1),
		fatal:  make(chan error, 1),
		ends:   make(map[topicPartition]int64),

		closed:    make(chan struct{}),
		finalDone: make(chan struct{}),
		left:      make(chan struct{}),
	}
	k.life, k.stop = context.WithCancel(context.Background())
	if cfg.ExactlyOnce {
		k.cuts = newCutStore()
	}

	for _, topic := range cfg.Topics {
		if err := k.openTopic(topic); err != nil {
			return nil, err
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

// Run sends the records read to out until ctx is done, reading fails, or
// with UntilEnd or Limit, reading is complete. Readers keep running after
// it returns, until Close; nothing is sent on out after it returns.
func (k *Source) Run(ctx context.Context, out chan<- []batcher.Record) error {
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
			if err := k.hand(ctx, c, out, sent); err != nil {
				return err
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

// hand tracks c's records, up to Limit with sent handed so far, and sends
// them to out.
func (k *Source) hand(ctx context.Context, c readChunk, out chan<- []batcher.Record, sent int64) error {
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
		return nil // its partition was revoked: the new owner reads it
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
		return nil
	}
	select {
	case out <- recs:
		k.handed.Add(int64(len(recs)))
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LocatesErrors reports that Run's errors name their topic and partition:
// a byte offset into the records read would mean nothing.
func (k *Source) LocatesErrors() bool { return true }

// Ack marks the records of b delivered or dead-lettered.
func (k *Source) Ack(b *batcher.Batch) {
	k.track.ack(b)
	if k.cuts != nil {
		k.cuts.acked()
	}
}

// Withdraw takes back the records of b whose partitions a rebalance is
// taking away: their new owner reads them from the last commit, so
// delivering them here too would deliver them twice.
func (k *Source) Withdraw(b *batcher.Batch) []int { return k.track.withdraw(b.Seq, b) }

// owns reports whether b's records are still this member's to deliver:
// their partition is assigned to it, and they were read under the current
// assignment. A sink that fences other producers of the partition (exactly
// once to Kafka) asks before it does.
func (k *Source) owns(b *batcher.Batch) bool {
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
func (k *Source) Settled(seq int64) { k.track.settle(seq) }

// Lag returns, per topic, the records not yet delivered (or dead-lettered)
// in the partitions this process reads: up to the end offsets with
// UntilEnd, else up to the latest high watermark, which the consumer
// brings with each fetch and the broker watch refreshes while it fetches
// nothing (the pipeline stalled).
func (k *Source) Lag() map[string]int64 {
	var others map[topicPartition]int64
	if o := k.othersLag.Load(); o != nil {
		others = *o
	}
	return k.track.lag(others)
}

// TotalLag is the sum of Lag, for the status line.
func (k *Source) TotalLag() int64 {
	var n int64
	for _, l := range k.Lag() {
		n += l
	}
	return n
}

// PartitionLag returns Lag per partition, for metrics.
func (k *Source) PartitionLag() []monitor.PartitionLag { return k.track.partLag() }

// Read returns how many records were handed to the pipeline.
func (k *Source) Read() int64 { return k.handed.Load() }

// ReachedEnd reports whether Run returned because, with UntilEnd, every
// record below the end offsets was read.
func (k *Source) ReachedEnd() bool { return k.reachedEnd.Load() }

// Close commits the offsets of what was delivered (with a group), leaves
// the group and stops reading. Call it once the pipeline has delivered
// everything it will; the client stays open.
func (k *Source) Close() error { return k.Shutdown(context.Background()) }

// Shutdown is Close that stops waiting once ctx is done: a broker that
// stopped answering would hold each request for the client's read timeout.
// Closing then goes on in the background. The error says whether the final
// commit was made: without it, the records delivered since the last commit
// will be read again. Leaving the group or stopping the readers unfinished
// loses nothing and is only logged.
//
// A member of a group that holds no partitions (a signal came while it
// was joining, or a drain ended during a rebalance) has nothing to commit
// or hand over: Shutdown returns once it has left the group, without
// waiting for the join under way to be answered (up to the rebalance
// timeout).
func (k *Source) Shutdown(ctx context.Context) error {
	k.closeOnce.Do(func() { go k.close(ctx) })
	final := k.finalDone // closed only with a group
	var left chan struct{}
wait:
	for {
		select {
		case <-k.closed:
			return k.closeErr
		case <-final:
			final = nil
			if k.finalErr == nil && k.unjoined {
				left = k.left
			}
		case <-left:
			k.log.Debug("kafka: not waiting for the join under way: this member holds no partitions", "group", k.cfg.Group)
			return nil
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

// close does the work of Close; closed is closed once it is over. A leave
// sent for a member unjoined gives up once ctx, Shutdown's, is done.
func (k *Source) close(ctx context.Context) {
	defer close(k.closed)
	var err error
	if k.group != nil {
		k.mu.Lock()
		k.closing = true
		k.unjoined = k.sess == nil
		if k.sess != nil {
			if err = k.finalCommitLocked(); err != nil {
				err = fmt.Errorf("%w; delivered records not committed will be read again", err)
			}
		}
		k.closeCutsConn()
		k.mu.Unlock()
		k.finalErr = err
		close(k.finalDone)
	}
	// Before the leave: a join then refused as unknown is not sent again.
	k.stop()
	if k.group != nil {
		if k.unjoined {
			k.leaveUnjoined(ctx)
		}
		close(k.left)
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
