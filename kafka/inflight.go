package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// maxInFlight bounds the record batches in flight to one partition. A
// broker remembers a producer's last five record batches of a partition,
// to know one sent again after its answer was lost; Kafka's producers
// keep five requests in flight a connection for the same reason.
const maxInFlight = 5

// DefaultParallel is the sink's -j unless given: batches in flight at once.
const DefaultParallel = maxInFlight

// partitionState is a partition's sequence numbers and its record batches
// in flight.
//
// Record batches are sent without waiting for the answers of those before
// them, in the order of their sequence numbers, and settled in that order:
// one that failed is sent again, alone, before any later one settles, and
// nothing new is sent to the partition until every one in flight has
// settled. So a partition's records land in the order they were sent, each
// once: the broker writes a batch only after the one before it, and a
// batch sent again with the sequence it had is written once. That holds
// once the broker knows the producer id on the partition: until then it
// takes any first sequence number (Kafka 2.5+, KIP-360), so the first
// record batch of an id goes alone, and so does the first after the
// partition was left idle long enough for the broker to forget the id.
type partitionState struct {
	mu      sync.Mutex
	changed chan struct{} // closed, and replaced, when the fields below change

	gen     int       // the producer id generation the sequences count in
	seq     int32     // the first sequence number of the next record batch
	good    int32     // the sequence number after the last record batch written
	written time.Time // when the broker last wrote a record batch of gen here; zero: not yet

	sent, settled uint64 // record batches sent, and settled in order: tickets
	recovering    bool   // one failed: nothing new until those in flight settle
	gaveUp        error  // why one was given up while recovering: the rest are not sent again

	// owed lists the batches whose records for the partition were given
	// up or not sent. Later batches wait to send to the partition until
	// each, tried again, has had records written there, or is settled, in
	// order: so they stay behind it.
	owed map[int64]bool
}

// change wakes whoever waits for st; st.mu must be held.
func (st *partitionState) change() {
	close(st.changed)
	st.changed = make(chan struct{})
}

// restart makes the sequences those of producer id generation gen, which
// the broker does not know here yet; st.mu must be held.
func (st *partitionState) restart(gen int) {
	st.gen, st.seq, st.good, st.written = gen, 0, 0, time.Time{}
}

// forgetAfter is how long a partition may go without a record batch
// written before the broker is taken to have forgotten the producer id
// there: producer.id.expiration.ms, a day by default, is a broker setting
// the producer cannot read, and going alone costs one round trip.
const forgetAfter = 10 * time.Minute

// known says whether the broker knows producer id generation gen on the
// partition at now, so that record batches may follow one another
// without waiting for answers; st.mu must be held.
func (st *partitionState) known(gen int, now time.Time) bool {
	return gen == st.gen && !st.written.IsZero() && now.Sub(st.written) < forgetAfter
}

// await waits, with st.mu held, for st to change; false if ctx ended.
func (st *partitionState) await(ctx context.Context) bool {
	ch := st.changed
	st.mu.Unlock()
	defer st.mu.Lock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// A flight is a record batch sent and not yet settled.
type flight struct {
	c      *chunk
	st     *partitionState
	ticket uint64
	gen    int
	seq    int32
	conn   connRef
	answer chan error // the broker's answer to the first send, or why it failed
}

// start sends c to its partition as one record batch and returns without
// waiting for the answer, once the partition has room. batch is the Seq of
// the batch c is part of (0: none).
func (k *Producer) start(ctx context.Context, c *chunk, batch int64) (*flight, error) {
	st := k.partition(c.partition)
	st.mu.Lock()
	defer st.mu.Unlock()
	var id producerID
	var idErr error
	for {
		if !st.recovering && st.sent-st.settled < maxInFlight && !st.behind(batch) {
			id, idErr = k.producerID()
			// A new producer id restarts the sequences: those in
			// flight with the old one settle first. Until the broker
			// has written one record batch of the id, it takes any
			// sequence number: one at a time, else those sent behind
			// a first one refused would be written before it.
			if idErr != nil || st.sent == st.settled || st.known(id.gen, time.Now()) {
				break
			}
		}
		if !st.await(ctx) {
			return nil, context.Cause(ctx)
		}
	}
	fl := &flight{c: c, st: st, ticket: st.sent, answer: make(chan error, 1)}
	st.sent++
	if idErr != nil {
		fl.answer <- idErr // settled in turn: tried again then
		return fl, nil
	}
	if st.gen != id.gen {
		st.restart(id.gen)
	}
	fl.gen, fl.seq = id.gen, st.seq
	st.seq += int32(len(c.recs))
	rb := recordBatch(c.recs, k.codec)
	rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = id.id, id.epoch, fl.seq
	// Sent under st.mu, so that the partition's record batches go out in
	// the order of their sequence numbers.
	fl.conn = k.sendAsync(c.partition, rb, fl.answer)
	return fl, nil
}

// finish waits for fl's answer and settles it after every record batch
// sent to its partition before it, sending it again if it failed. batch is
// the Seq of the batch fl is part of.
func (k *Producer) finish(ctx context.Context, fl *flight, batch int64) chunkResult {
	err := <-fl.answer // sarama answers every request sent, if only with a closed connection
	k.afterError(fl.c.partition, fl.conn, err)

	st := fl.st
	st.mu.Lock()
	defer st.mu.Unlock()
	for st.settled != fl.ticket {
		st.await(context.Background()) // those before settle without us
	}
	defer func() {
		st.settled++
		if st.recovering && st.settled == st.sent {
			st.recovering, st.gaveUp = false, nil
		}
		if st.recovering || st.settled == st.sent {
			// What was sent after a failure is sent again from the
			// sequence after the last batch written.
			st.seq = st.good
		}
		st.change()
	}()
	if err == nil {
		if fl.gen == st.gen {
			st.good, st.written = fl.seq+int32(len(fl.c.recs)), time.Now()
		}
		delete(st.owed, batch)
		return chunkResult{fl.c.index, []error{nil}}
	}
	st.recovering = true
	if st.gaveUp != nil {
		st.owe(batch)
		return chunkResult{fl.c.index, []error{fmt.Errorf("not sent: an earlier record batch of partition %d failed: %w", fl.c.partition, st.gaveUp)}}
	}
	if fl.gen == st.gen {
		st.seq = st.good
	}
	res := k.resendChunk(ctx, st, fl.c)
	st.good = st.seq
	if slices.Contains(res.errs, nil) {
		delete(st.owed, batch)
	}
	for _, e := range res.errs {
		if e != nil && !refusedForGood(e) {
			st.gaveUp = e
			st.owe(batch)
			break
		}
	}
	return res
}

// behind reports whether batch must wait to send: a batch before it owes
// the partition records. A batch without a Seq never waits.
func (st *partitionState) behind(batch int64) bool {
	for b := range st.owed {
		if b < batch {
			return true
		}
	}
	return false
}

func (st *partitionState) owe(batch int64) {
	if batch <= 0 {
		return
	}
	if st.owed == nil {
		st.owed = make(map[int64]bool)
	}
	st.owed[batch] = true
}

// settled lets batches behind batch send: it will not be tried again.
func (k *Producer) settled(batch int64) {
	k.partsMu.Lock()
	defer k.partsMu.Unlock()
	for _, st := range k.parts {
		st.mu.Lock()
		if st.owed[batch] {
			delete(st.owed, batch)
			st.change()
		}
		st.mu.Unlock()
	}
}

// sendAsync sends rb to the leader of partition p, and writes the outcome
// to answer, which must have room for it.
func (k *Producer) sendAsync(p int32, rb *sarama.RecordBatch, answer chan<- error) connRef {
	broker, err := k.client.Leader(k.cfg.Topic, p)
	if err != nil {
		k.reseed(err)
		answer <- err
		return connRef{}
	}
	conn := k.conns.ref(broker)
	req := k.produceRequest(p, rb, nil)
	// The callback runs on the connection's reading goroutine: it must
	// not call the broker, only hand the answer over.
	err = broker.AsyncProduce(req, func(resp *sarama.ProduceResponse, err error) {
		if err != nil {
			answer <- &connError{err}
			return
		}
		answer <- k.blockError(broker, resp, p)
	})
	if err != nil {
		answer <- &connError{err}
	}
	return conn
}

// afterError does what err from a send calls for: a new connection, or
// new metadata.
func (k *Producer) afterError(p int32, conn connRef, err error) {
	var ce *connError
	switch {
	case errors.As(err, &ce):
		// The connection is in doubt: the next send opens a new one.
		k.conns.drop(conn)
		k.client.RefreshMetadata(k.cfg.Topic)
	case errors.Is(err, sarama.ErrNotLeaderForPartition), errors.Is(err, sarama.ErrLeaderNotAvailable),
		errors.Is(err, sarama.ErrUnknownTopicOrPartition):
		k.client.RefreshMetadata(k.cfg.Topic)
	}
}

// A connError is a request that got no answer: its connection failed.
type connError struct{ err error }

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// conns numbers each broker's connections, so that of the requests a
// failed connection took down, only the first closes it: the others would
// close the one opened since.
type conns struct {
	mu   sync.Mutex
	open map[*sarama.Broker]uint64
}

// A connRef is the connection a request went out on.
type connRef struct {
	broker *sarama.Broker
	n      uint64
}

func (c *conns) ref(b *sarama.Broker) connRef {
	c.mu.Lock()
	defer c.mu.Unlock()
	return connRef{b, c.open[b]}
}

// drop closes the connection r went out on, if it is still b's.
func (c *conns) drop(r connRef) {
	if r.broker == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open == nil {
		c.open = make(map[*sarama.Broker]uint64)
	}
	if c.open[r.broker] == r.n {
		c.open[r.broker]++
		r.broker.Close()
	}
}

// sendOrder lets batches send in the order they were formed: a batch's
// first attempt waits until every earlier batch has sent its record
// batches, or settled without.
type sendOrder struct {
	mu      sync.Mutex
	next    int64          // the first batch not through
	through map[int64]bool // batches after next that are
	changed chan struct{}
}

func newSendOrder() *sendOrder {
	return &sendOrder{next: 1, through: make(map[int64]bool), changed: make(chan struct{})}
}

// wait returns once every batch before seq is through, at once for a
// batch through itself (one tried again) or without a Seq.
func (o *sendOrder) wait(ctx context.Context, seq int64) error {
	for {
		o.mu.Lock()
		ok, ch := seq <= o.next || o.through[seq], o.changed
		o.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// pass lets the batches after seq go.
func (o *sendOrder) pass(seq int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if seq < o.next || o.through[seq] {
		return
	}
	o.through[seq] = true
	for o.through[o.next] {
		delete(o.through, o.next)
		o.next++
	}
	close(o.changed)
	o.changed = make(chan struct{})
}
