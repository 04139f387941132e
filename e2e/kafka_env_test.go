package e2e

// Where the Kafka tests' records live: kfake by default, or the real Apache
// Kafka broker named by BATCHPIPE_TEST_KAFKA (the env file that
// `make kafka-real` writes). Every test that checks a claim the README makes
// about Kafka runs on both; those that need kfake's controls (swallowing
// requests, injected errors) say so and are skipped on the real broker.
//
// A real broker is shared by every test, so each test gets its own topic
// and group names; a test that stops its broker starts one of its own.

import (
	"context"
	"testing"

	"github.com/batchpipe/batchpipe/internal/kafkareal"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// realKafka is the env file of the real broker, or nil for kfake.
var realKafka map[string]string

// loadRealKafka reads BATCHPIPE_TEST_KAFKA, if set (kafkatest.Real); the
// broker's password joins the secrets no output may hold.
func loadRealKafka() error {
	env, err := kafkatest.Real()
	if err != nil || env == nil {
		return err
	}
	realKafka = env
	testSecrets = append(testSecrets, env[kafkareal.EnvPassword])
	return nil
}

// A kafkaEnv is a cluster with a topic of the test's own.
type kafkaEnv struct {
	t      *testing.T
	addr   string // PLAINTEXT listener
	topic  string // "t" on kfake
	group  string // "g" on kfake
	prefix string // of every name the test uses on a shared broker

	fake    *kfake.Cluster    // nil on a real broker
	fakeOpt []kfake.Opt       // to start it again
	broker  *kafkareal.Broker // a real broker of the test's own, if any
}

// name returns a topic or group name of the test's own.
func (k *kafkaEnv) name(s string) string { return k.prefix + s }

func (k *kafkaEnv) real() bool { return k.fake == nil }

// newKafka returns a cluster, kfake or the real broker, with topic k.topic
// of parts partitions (none if 0), whose groups accept short session
// timeouts.
func newKafka(t *testing.T, parts int32) *kafkaEnv {
	t.Helper()
	if realKafka == nil {
		return newFakeKafka(t, parts)
	}
	k := &kafkaEnv{t: t, addr: realKafka[kafkareal.EnvPlaintext], prefix: kafkareal.Prefix(t.Name())}
	k.topic, k.group = k.name("t"), k.name("g")
	if parts > 0 {
		kafkatest.CreateTopic(t, k.addr, k.topic, parts)
	}
	return k
}

// fakeKafka returns a kfake cluster for a test that needs what only kfake
// can do, said by why; on the real broker the test is skipped.
func fakeKafka(t *testing.T, why string, parts int32, opts ...kfake.Opt) *kafkaEnv {
	t.Helper()
	if realKafka != nil {
		t.Skipf("kfake only (%s): runs without BATCHPIPE_TEST_KAFKA", why)
	}
	return newFakeKafka(t, parts, opts...)
}

func newFakeKafka(t *testing.T, parts int32, opts ...kfake.Opt) *kafkaEnv {
	t.Helper()
	opts = kafkatest.FakeOpts(append([]kfake.Opt{kfake.SeedTopics(parts, "t")}, opts...)...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	k := &kafkaEnv{t: t, addr: c.ListenAddrs()[0], topic: "t", group: "g", fake: c, fakeOpt: opts}
	t.Cleanup(func() { k.fake.Close() })
	return k
}

// ownKafka returns a cluster of the test's own, which it may stop and
// start again: a kfake cluster keeping its data in a directory, or a real
// broker started for the test.
func ownKafka(t *testing.T, parts int32) *kafkaEnv {
	t.Helper()
	if realKafka == nil {
		port := kafkatest.FreePort(t)
		return newFakeKafka(t, parts, kfake.Ports(port), kfake.DataDir(t.TempDir()), kfake.SyncWrites())
	}
	b, err := kafkareal.Start(context.Background(), kafkareal.Config{Libs: realKafka[kafkareal.EnvLibs], Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	testSecrets = append(testSecrets, b.Password)
	t.Cleanup(func() { b.Kill() })
	k := &kafkaEnv{t: t, addr: b.Plaintext, topic: "t", group: "g", broker: b}
	kafkatest.CreateTopic(t, k.addr, k.topic, parts)
	return k
}

// stop stops the cluster of ownKafka, as a crash would; or kfake's.
func (k *kafkaEnv) stop() {
	k.t.Helper()
	switch {
	case k.broker != nil:
		k.broker.Kill()
	case k.fake != nil:
		k.fake.Close()
	default:
		k.t.Fatal("the shared real broker cannot be stopped: use ownKafka")
	}
}

// restart starts the cluster of ownKafka again, with its data and port.
func (k *kafkaEnv) restart() {
	k.t.Helper()
	if k.broker != nil {
		if err := k.broker.Restart(context.Background()); err != nil {
			k.t.Fatal(err)
		}
		return
	}
	c, err := kfake.NewCluster(k.fakeOpt...)
	if err != nil {
		k.t.Fatal(err)
	}
	k.fake = c
}
