// Package kafkatest is where every Kafka test finds its brokers: kfake, in
// process, by default; or the real Apache Kafka broker that
// BATCHPIPE_TEST_KAFKA names (the env file tools/kafka-real writes, see
// make test-kafka-real). The switch is read here only. A real broker is
// shared by every test, so each test's topics and groups get names of
// their own (Cluster.Name).
//
// Beside the switch, the helpers the Kafka tests of several packages
// share: a client, a producer of numbered records, a group's committed
// offsets, topics created and waited on.
package kafkatest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/batchpipe/batchpipe/internal/kafkareal"
	"github.com/twmb/franz-go/pkg/kfake"
)

// EnvVar names the env file of the real broker the tests run against;
// unset, they run against kfake.
const EnvVar = "BATCHPIPE_TEST_KAFKA"

// Real returns the env file of the real broker (kafkareal.Env* keys), or
// nil when the tests run against kfake.
var Real = sync.OnceValues(func() (map[string]string, error) {
	path := os.Getenv(EnvVar)
	if path == "" {
		return nil, nil
	}
	env, err := kafkareal.ReadEnv(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvVar, err)
	}
	return env, nil
})

// RealEnv is Real for a test: it fails the test when the env file cannot
// be read.
func RealEnv(t testing.TB) map[string]string {
	t.Helper()
	env, err := Real()
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// A Cluster is where a test's topics live: kfake, or the shared real
// broker.
type Cluster struct {
	Addrs  []string
	Prefix string         // of every name the test uses on a shared broker
	Fake   *kfake.Cluster // nil on the real broker
}

// ListenAddrs returns the brokers' addresses, as kfake.Cluster does.
func (c *Cluster) ListenAddrs() []string { return c.Addrs }

// Name returns a topic or group name of the test's own.
func (c *Cluster) Name(s string) string { return c.Prefix + s }

// IsReal reports whether the cluster is the real broker.
func (c *Cluster) IsReal() bool { return c.Fake == nil }

// FakeOpts returns opts after those of every test's kfake cluster: one
// broker, whose groups accept short session timeouts.
func FakeOpts(opts ...kfake.Opt) []kfake.Opt {
	return append([]kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100 * time.Millisecond)}, opts...)
}

// NewFake starts a kfake cluster of FakeOpts, closed when the test ends.
func NewFake(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(FakeOpts(opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// FakeOnly skips the test on the real broker: it needs what only kfake can
// do, said by why (swallowing requests, injected errors).
func FakeOnly(t testing.TB, why string) {
	t.Helper()
	if RealEnv(t) != nil {
		t.Skipf("kfake only (%s): runs without %s", why, EnvVar)
	}
}

// NewTopic returns a cluster with a topic of parts partitions, and the
// topic's name: "t" on kfake, a name of the test's own on the real broker.
// opts are kfake's, ignored on the real broker.
func NewTopic(t testing.TB, parts int32, opts ...kfake.Opt) (*Cluster, string) {
	t.Helper()
	env := RealEnv(t)
	if env == nil {
		c := NewFake(t, append(opts, kfake.SeedTopics(parts, "t"))...)
		return &Cluster{Addrs: c.ListenAddrs(), Fake: c}, "t"
	}
	c := &Cluster{Addrs: []string{env[kafkareal.EnvPlaintext]}, Prefix: kafkareal.Prefix(t.Name())}
	topic := c.Name("t")
	CreateTopic(t, c.Addrs[0], topic, parts)
	return c, topic
}

// CreateTopic creates topic, with configs if any, and returns once every
// partition has a leader.
func CreateTopic(t testing.TB, addr, topic string, parts int32, configs ...string) {
	t.Helper()
	if err := kafkareal.CreateTopic(context.Background(), addr, topic, parts, configs...); err != nil {
		t.Fatal(err)
	}
}

// WaitStable returns once no transaction is open on any partition of
// topic: a real broker writes the markers that end a transaction after the
// producer's EndTransaction has returned, and until then a read_committed
// reader's end, the last stable offset, stops short of the records.
func WaitStable(t testing.TB, addr, topic string) {
	t.Helper()
	if err := kafkareal.WaitStable(context.Background(), addr, topic); err != nil {
		t.Fatal(err)
	}
}

// FreePort returns a loopback port nothing listens on.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := kafkareal.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Eventually polls ok until it holds, for a broker state the test cannot
// be told of (a leader elected, a log cleaned); a minute at most.
func Eventually(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("no %s within a minute", what)
		}
	}
}
