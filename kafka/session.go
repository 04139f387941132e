package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
)

// SessionConfig says what a run reads from Kafka and writes to it through
// one client: the source, the dead letter, or both.
type SessionConfig struct {
	Conn *Conn
	// Source is what to read; nil when Kafka only takes dead letters.
	Source *SourceConfig
	// DeadLetter is the topic records that could not be delivered go to;
	// "": none.
	DeadLetter string
	// TxnSink says the sink is a transactional Producer on the same
	// cluster (Source.ExactlyOnce to Kafka): its transactions commit the
	// source's offsets, and it decides where batches are cut. Wire pairs
	// them.
	TxnSink bool
	// Timeout bounds the final commit in Finish. Default 30s.
	Timeout time.Duration
}

// A Session is what one run holds open of Kafka: the client the source
// and the dead letter share, the source, and the dead letter.
type Session struct {
	client  sarama.Client
	src     *Source     // nil when Kafka only takes dead letters
	dl      *DeadLetter // nil without one
	txnSink bool
	timeout time.Duration
}

// Open connects and opens the source and the dead letter. Its errors are
// Errors: brokers that cannot be reached, a missing topic or partition
// are Unavailable; credentials and TLS the brokers refuse, Refused.
// Nothing was read yet.
func Open(cfg SessionConfig) (*Session, error) {
	var topics []string
	if cfg.Source != nil {
		topics = cfg.Source.Topics
	}
	if cfg.DeadLetter != "" {
		topics = append(topics[:len(topics):len(topics)], cfg.DeadLetter)
	}
	client, err := cfg.Conn.Connect(topics...)
	if err != nil {
		return nil, connectError(err)
	}
	s := &Session{client: client, txnSink: cfg.TxnSink, timeout: cfg.Timeout}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if cfg.Source != nil {
		sc := *cfg.Source
		if cfg.TxnSink {
			// The sink's transactions commit the offsets, and where
			// batches are cut no longer matters (txn.go).
			sc.ExactlyOnce, sc.offsetsInSink = false, true
		}
		if s.src, err = OpenSource(client, sc); err != nil {
			client.Close()
			return nil, unavailable(err) // a topic or partition missing, a broker refusing
		}
	}
	if cfg.DeadLetter != "" {
		if s.dl, err = NewDeadLetter(client, cfg.DeadLetter); err != nil {
			s.Finish(context.Background()) // nothing was read: nothing to commit
			return nil, unavailable(err)
		}
	}
	return s, nil
}

// Source returns the source, or nil when Kafka only takes dead letters.
func (s *Session) Source() *Source { return s.src }

// DeadLetter returns the dead letter, or nil without one. Finish closes
// it.
func (s *Session) DeadLetter() batcher.DeadLetter {
	if s.dl == nil {
		return nil
	}
	return s.dl
}

// Wire sets what the pipeline needs of Kafka for exactly once, once the
// sink is open and cfg.OnSettled set: batches of one partition each
// (cfg.Key), each planned before it is delivered (cfg.Plan). The source
// plans them, storing each batch's cut; or, with a transactional sink,
// the sink does, learning the order its transactions must commit in,
// learns each batch's fate (cfg.OnSettled, before what was set there), and
// asks the source whether a partition is still this member's before it
// fences its other producers.
func (s *Session) Wire(cfg *batcher.Config, sink batcher.Sink) error {
	switch {
	case s.src == nil:
	case s.txnSink:
		p, ok := sink.(*Producer)
		if !ok || p.txn == nil {
			return errors.New("kafka: exactly once to Kafka needs a transactional kafka sink")
		}
		cfg.Key, cfg.Plan = batcher.PartitionKey, p.plan
		p.txn.owns = s.src.owns
		if observe := cfg.OnSettled; observe != nil {
			cfg.OnSettled = func(st batcher.Settlement) { p.onSettled(st); observe(st) }
		} else {
			cfg.OnSettled = p.onSettled
		}
	case s.src.cfg.ExactlyOnce:
		cfg.Key, cfg.Plan = batcher.PartitionKey, s.src.plan
	}
	return nil
}

// Finish commits the offsets of what was delivered and lets go of the
// cluster, giving up after the session's Timeout or once ctx is done: a
// broker that stopped answering must not hold the exit. Only an
// unfinished commit, or a drain that does not hold, is an error; the rest
// loses nothing.
func (s *Session) Finish(ctx context.Context) error {
	ctx, cancel := context.WithTimeoutCause(ctx, s.timeout, fmt.Errorf("no answer within --kafka-timeout (%v)", s.timeout))
	defer cancel()
	var err error
	if s.src != nil {
		err = s.src.Shutdown(ctx)
		if err == nil {
			// A failed commit was reported: only after a clean one do the
			// offsets tell whether the drain holds.
			err = s.src.CheckDrain()
		}
	}
	if ctx.Err() != nil {
		return err // the source may still be closing: the client stays
	}
	closed := make(chan error, 1)
	go func() {
		// Dead letters were acknowledged as they were written: closing
		// the producer has nothing left to send.
		var dlErr error
		if s.dl != nil {
			dlErr = s.dl.Close()
		}
		s.client.Close()
		closed <- dlErr
	}()
	select {
	case dlErr := <-closed:
		return errors.Join(err, dlErr)
	case <-ctx.Done():
		return err
	}
}

// Summary is the line of the exit summary about what the source read.
func (s *Session) Summary() string {
	lag := s.src.Lag()
	var total int64
	names := make([]string, 0, len(lag))
	for t, n := range lag {
		total += n
		names = append(names, t)
	}
	sort.Strings(names)
	topics := len(s.src.cfg.Topics)
	ts := "topics"
	if topics == 1 {
		ts = "topic"
	}
	if s.src.ReachedEnd() && total == 0 {
		return fmt.Sprintf("drained %d records from %d %s, lag 0", s.src.Read(), topics, ts)
	}
	line := fmt.Sprintf("kafka: %d records read from %d %s, lag %d", s.src.Read(), topics, ts, total)
	if total > 0 && len(names) > 1 {
		var parts []string
		for _, t := range names {
			parts = append(parts, fmt.Sprintf("%s %d", t, lag[t]))
		}
		line += " (" + strings.Join(parts, ", ") + ")"
	}
	return line
}
