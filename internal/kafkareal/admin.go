package kafkareal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// Tests that share a broker create their topics with CreateTopic and wait
// for transactions with WaitStable: what kfake does at once, a real broker
// does a moment later.

func client(addr string) (sarama.Client, error) {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_1_0_0
	return sarama.NewClient([]string{addr}, cfg)
}

// CreateTopic creates topic with the configs given (name, value, name,
// value...), and returns once every partition's leader serves it. The
// metadata names a leader before the leader has the partition: until then
// it refuses requests for it as not its leader, and on a loaded machine
// for longer than a producer's retries last.
func CreateTopic(ctx context.Context, addr, topic string, parts int32, configs ...string) error {
	cl, err := client(addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	admin, err := sarama.NewClusterAdminFromClient(cl)
	if err != nil {
		return err
	}
	detail := &sarama.TopicDetail{NumPartitions: parts, ReplicationFactor: 1, ConfigEntries: map[string]*string{}}
	for i := 0; i+1 < len(configs); i += 2 {
		detail.ConfigEntries[configs[i]] = &configs[i+1]
	}
	if err := admin.CreateTopic(topic, detail, false); err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return poll(ctx, "topic "+topic+" has leaders", func() (bool, error) {
		if cl.RefreshMetadata(topic) != nil {
			return false, nil
		}
		ps, err := cl.Partitions(topic)
		if err != nil || len(ps) != int(parts) {
			return false, nil
		}
		for _, p := range ps {
			l, err := cl.Leader(topic, p)
			if err != nil || l == nil {
				return false, nil
			}
			req := &sarama.OffsetRequest{Version: 1}
			req.AddBlock(topic, p, sarama.OffsetNewest, 1)
			resp, err := l.GetAvailableOffsets(req)
			if err != nil {
				return false, nil
			}
			if b := resp.GetBlock(topic, p); b == nil || b.Err != sarama.ErrNoError {
				return false, nil
			}
		}
		return true, nil
	})
}

// WaitStable returns once no transaction is open on any partition of
// topic: the last stable offset, the end for a read_committed reader, has
// reached the high watermark. A real broker writes the markers that end a
// transaction after the producer's EndTransaction has returned.
func WaitStable(ctx context.Context, addr, topic string) error {
	cl, err := client(addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	parts, err := cl.Partitions(topic)
	if err != nil {
		return err
	}
	end := func(p int32, level sarama.IsolationLevel) (int64, error) {
		leader, err := cl.Leader(topic, p)
		if err != nil {
			return 0, err
		}
		req := &sarama.OffsetRequest{Version: 2, IsolationLevel: level}
		req.AddBlock(topic, p, sarama.OffsetNewest, 1)
		resp, err := leader.GetAvailableOffsets(req)
		if err != nil {
			return 0, err
		}
		b := resp.GetBlock(topic, p)
		if b == nil {
			return 0, fmt.Errorf("list offsets of %s[%d]: no answer", topic, p)
		}
		if !errors.Is(b.Err, sarama.ErrNoError) {
			return 0, fmt.Errorf("list offsets of %s[%d]: %w", topic, p, b.Err)
		}
		return b.Offset, nil
	}
	return poll(ctx, "transaction markers on every partition of "+topic, func() (bool, error) {
		for _, p := range parts {
			committed, err1 := end(p, sarama.ReadCommitted)
			all, err2 := end(p, sarama.ReadUncommitted)
			if err := errors.Join(err1, err2); err != nil {
				return false, err
			}
			if committed != all {
				return false, nil
			}
		}
		return true, nil
	})
}

// poll calls ok until it holds, for a minute at most.
func poll(ctx context.Context, what string, ok func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		done, err := ok()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("no %s within a minute", what)
		}
	}
}

// Prefix returns a prefix for the topics and groups of the test named
// name on a shared broker: the name in the characters topics allow, and a
// random part, so that a test run again gets new ones.
func Prefix(name string) string {
	var sb strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			sb.WriteRune(r)
		default:
			sb.WriteByte('_')
		}
	}
	s := sb.String()
	if len(s) > 120 {
		s = s[:120]
	}
	return s + "-" + randomHex(3) + "-"
}
