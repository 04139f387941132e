package sources

import (
	"context"
	"os"
	"testing"

	"github.com/batchpipe/batchpipe/internal/kafkareal"
	"github.com/twmb/franz-go/pkg/kfake"
)

// A cluster is where a test's topic lives: kfake, or the real Apache
// Kafka broker that BATCHPIPE_TEST_KAFKA names (kafka-real's env file).
// The real broker is shared, so there each test's topics and groups get
// names of their own.
type cluster struct {
	addrs  []string
	prefix string
}

func (c *cluster) ListenAddrs() []string { return c.addrs }

// name returns a topic or group name of the test's own.
func (c *cluster) name(s string) string { return c.prefix + s }

// brokers is a cluster to produce to and connect to: a *kfake.Cluster or a
// *cluster.
type brokers interface{ ListenAddrs() []string }

// newTopic returns a cluster with a topic of parts partitions, and the
// topic's name.
func newTopic(t *testing.T, parts int32) (*cluster, string) {
	t.Helper()
	path := os.Getenv("BATCHPIPE_TEST_KAFKA")
	if path == "" {
		c := newCluster(t, kfake.SeedTopics(parts, "t"))
		return &cluster{addrs: c.ListenAddrs()}, "t"
	}
	env, err := kafkareal.ReadEnv(path)
	if err != nil {
		t.Fatalf("BATCHPIPE_TEST_KAFKA: %v", err)
	}
	c := &cluster{addrs: []string{env[kafkareal.EnvPlaintext]}, prefix: kafkareal.Prefix(t.Name())}
	topic := c.name("t")
	if err := kafkareal.CreateTopic(context.Background(), c.addrs[0], topic, parts); err != nil {
		t.Fatal(err)
	}
	return c, topic
}
