package e2e

// Where the Kafka tests' records live: kfake by default, or the real Apache
// Kafka broker named by BATCHPIPE_TEST_KAFKA (the env file that
// `make kafka-real` writes). Every test that checks a claim the README makes
// about Kafka runs on both; those that need kfake's controls (swallowing
// requests, injected errors) say so and are skipped on the real broker.
//
// A real broker is shared by every test, so each test gets its own topic
// and group names; a test that stops its broker starts one of its own.
//
// Beside the broker, the helpers that drive it: a producer, readers of
// topics and committed offsets, and the records delivered per partition.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/internal/kafkareal"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
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
	secretsMu.Lock()
	testSecrets = append(testSecrets, b.Password)
	secretsMu.Unlock()
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

const filler = "abcdefghijklmnopqrstuvwxyz0123456789"

// value is the value of record i of partition p.
func value(p int32, i int) string { return fmt.Sprintf("%d/%d/%s", p, i, filler) }

// parseValue returns the partition and offset a delivered line came from.
func parseValue(t *testing.T, line string) (int32, int64) {
	t.Helper()
	f := strings.SplitN(line, "/", 3)
	if len(f) != 3 || f[2] != filler {
		t.Fatalf("line %q is not a record produced by the test", line)
	}
	p, err1 := strconv.Atoi(f[0])
	i, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("line %q is not a record produced by the test", line)
	}
	return int32(p), i
}

// producer writes test records to a cluster.
type producer struct {
	t    *testing.T
	p    sarama.SyncProducer
	next map[int32]int // next record number per partition
}

func newProducer(t *testing.T, addr string) *producer {
	t.Helper()
	return &producer{t: t, p: kafkatest.NewProducer(t, addr), next: make(map[int32]int)}
}

// produce writes n more records to each partition listed, with a key and a
// header each.
func (pr *producer) produce(topic string, parts []int32, n int) {
	pr.t.Helper()
	var msgs []*sarama.ProducerMessage
	flush := func() {
		kafkatest.Send(pr.t, pr.p, msgs)
		msgs = msgs[:0]
	}
	for _, p := range parts {
		for range n {
			i := pr.next[p]
			pr.next[p]++
			msgs = append(msgs, &sarama.ProducerMessage{
				Topic: topic, Partition: p,
				Key:     sarama.StringEncoder("k" + strconv.Itoa(i)),
				Value:   sarama.StringEncoder(value(p, i)),
				Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: []byte("v" + strconv.Itoa(i))}},
			})
			if len(msgs) == 10000 {
				flush()
			}
		}
	}
	flush()
}

var parts4 = []int32{0, 1, 2, 3}

// delivered is a multiset of delivered records by partition and offset.
type delivered map[int32]map[int64]int

func (d delivered) add(t *testing.T, lines ...string) {
	t.Helper()
	for _, l := range lines {
		p, i := parseValue(t, l)
		if d[p] == nil {
			d[p] = make(map[int64]int)
		}
		d[p][i]++
	}
}

func (d delivered) count() int {
	n := 0
	for _, m := range d {
		for _, c := range m {
			n += c
		}
	}
	return n
}

// wantExactly checks that d holds each record of counts (records per
// partition, from offset from[p]) exactly once, and nothing else.
func wantExactly(t *testing.T, d delivered, from map[int32]int64, counts map[int32]int) {
	t.Helper()
	for p, n := range counts {
		for i := from[p]; i < int64(n); i++ {
			if c := d[p][i]; c != 1 {
				t.Fatalf("record %d/%d delivered %d times, want once", p, i, c)
			}
		}
		for i := range d[p] {
			if i < from[p] || i >= int64(n) {
				t.Fatalf("record %d/%d delivered, want only offsets %d-%d", p, i, from[p], n-1)
			}
		}
	}
	for p := range d {
		if _, ok := counts[p]; !ok {
			t.Fatalf("records of partition %d delivered, want none", p)
		}
	}
}

func each(parts []int32, n int) map[int32]int {
	m := make(map[int32]int)
	for _, p := range parts {
		m[p] = n
	}
	return m
}

// drainFrom restarts the group on the topic with --until-end and checks
// that it delivers exactly the records from the committed offsets to
// perPartition.
func drainFrom(t *testing.T, k *kafkaEnv, committed map[int32]int64, perPartition int) delivered {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	r := run(t, nil, "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "--until-end", "-n", "500", "file", out)
	if r.code != 0 {
		t.Fatalf("restart: exit %d:\n%s", r.code, r.stderr)
	}
	d := delivered{}
	d.add(t, fileLines(t, out)...)
	wantExactly(t, d, committed, each(parts4, perPartition))
	return d
}

// clusterAdmin returns an admin client of the cluster at addr.
func clusterAdmin(t *testing.T, addr string) sarama.ClusterAdmin {
	t.Helper()
	admin, err := sarama.NewClusterAdmin([]string{addr}, kafkatest.Config())
	if err != nil {
		t.Fatal(err)
	}
	return admin
}

// committedOffsets returns the group's committed offsets of topic.
func committedOffsets(t *testing.T, addr, topic, group string, parts []int32) map[int32]int64 {
	t.Helper()
	admin := clusterAdmin(t, addr)
	defer admin.Close()
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[int32]int64)
	for _, p := range parts {
		out[p] = max(resp.GetBlock(topic, p).Offset, 0) // none: reading starts at 0
	}
	return out
}

// covers reports whether every record of parts up to n was delivered.
func (d delivered) covers(parts []int32, n int) bool {
	for _, p := range parts {
		if len(d[p]) < n {
			return false
		}
	}
	return true
}

func headers(m *sarama.ConsumerMessage) map[string]string {
	h := make(map[string]string)
	for _, rh := range m.Headers {
		h[string(rh.Key)] = string(rh.Value)
	}
	return h
}

// A saslLogin is a way to log in to a cluster that takes SASL.
type saslLogin struct{ mechanism, addr, user, pass string }

// saslKafka returns a cluster of one partition that takes SASL, and the
// logins to try on it: on kfake, mechanism with user and pass; on the real
// broker, PLAIN and SCRAM-SHA-256 on its SASL_PLAINTEXT listener.
func saslKafka(t *testing.T, mechanism, user, pass string) (*kafkaEnv, []saslLogin) {
	t.Helper()
	if realKafka == nil {
		k := newFakeKafka(t, 1, kfake.EnableSASL(), kfake.Superuser(strings.ToUpper(mechanism), user, pass))
		return k, []saslLogin{{mechanism, k.addr, user, pass}}
	}
	addr, user, pass := realKafka[kafkareal.EnvSASL], realKafka[kafkareal.EnvUser], realKafka[kafkareal.EnvPassword]
	return newKafka(t, 1), []saslLogin{{"plain", addr, user, pass}, {"scram-sha-256", addr, user, pass}}
}

// readTopic returns every record of topic.
func readTopic(t *testing.T, addr, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	client := kafkatest.Client(t, addr)
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*sarama.ConsumerMessage
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		if end == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		// A minute at most: a record that never comes fails the test
		// rather than hang it until go test's own timeout.
		timeout := time.NewTimer(time.Minute)
		next := int64(0)
	read:
		for {
			select {
			case m := <-pc.Messages():
				msgs, next = append(msgs, m), m.Offset+1
				if next >= end {
					break read
				}
			case <-timeout.C:
				pc.Close()
				t.Fatalf("topic %s partition %d: nothing from offset %d to its end %d within a minute", topic, p, next, end)
			}
		}
		timeout.Stop()
		pc.Close()
	}
	return msgs
}

// produceTxn writes n more records to each partition listed in one
// committed transaction, so that each ends with a commit marker: an offset
// that holds no record to read.
func (pr *producer) produceTxn(addr, topic, txnID string, parts []int32, n int) {
	pr.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID(txnID), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		pr.t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		pr.t.Fatal(err)
	}
	var recs []*kgo.Record
	for _, p := range parts {
		for range n {
			i := pr.next[p]
			pr.next[p]++
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte("k" + strconv.Itoa(i)), Value: []byte(value(p, i))})
		}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		pr.t.Fatal(err)
	}
	if err := cl.EndTransaction(context.Background(), kgo.TryCommit); err != nil {
		pr.t.Fatal(err)
	}
	kafkatest.WaitStable(pr.t, addr, topic)
}

// idleMember is a group member that takes its partitions and reads
// nothing; it reports the partitions of t of its first assignment.
type idleMember struct {
	topic  string
	claims chan []int32
}

func (m idleMember) Setup(s sarama.ConsumerGroupSession) error {
	select {
	case m.claims <- s.Claims()[m.topic]:
	default:
	}
	return nil
}

func (idleMember) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (idleMember) ConsumeClaim(s sarama.ConsumerGroupSession, _ sarama.ConsumerGroupClaim) error {
	<-s.Context().Done()
	return nil
}

// joinGroup adds an idle member to the group until the test ends, and
// returns the partitions of the topic it was given.
func joinGroup(t *testing.T, k *kafkaEnv) []int32 {
	t.Helper()
	cfg := kafkatest.Config()
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	// Long enough that a busy machine does not drop it from the group:
	// the tests want its partitions held until they end.
	cfg.Consumer.Group.Session.Timeout = 5 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	g, err := sarama.NewConsumerGroup([]string{k.addr}, k.group, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := idleMember{topic: k.topic, claims: make(chan []int32, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			// A rebalance may fail to join (another one began): join
			// again, as a real member would, rather than leave.
			err := g.Consume(ctx, []string{k.topic}, m)
			if errors.Is(err, sarama.ErrClosedConsumerGroup) {
				return
			}
			if err != nil {
				select { // not in a tight loop while the broker refuses
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		g.Close()
		<-done
	})
	select {
	case claims := <-m.claims:
		return claims
	case <-time.After(time.Minute):
		t.Fatal("the new member got no partitions within a minute")
		return nil
	}
}

// byPartition returns the values of topic's records, by partition, in
// offset order.
func byPartition(t *testing.T, addr, topic string) map[int32][]*sarama.ConsumerMessage {
	t.Helper()
	out := make(map[int32][]*sarama.ConsumerMessage)
	for _, m := range readTopic(t, addr, topic) {
		out[m.Partition] = append(out[m.Partition], m)
	}
	return out
}

// committedRecord is one record a read_committed reader sees.
type committedRecord struct {
	partition int32
	offset    int64
	value     []byte
}

// readCommitted returns every record of topic a read_committed consumer
// sees: records of committed transactions and outside any, no control
// records. It waits for the transaction markers first, so that the last
// stable offset is the end.
func readCommitted(t *testing.T, addr, topic string) []committedRecord {
	t.Helper()
	kafkatest.WaitStable(t, addr, topic)
	client := kafkatest.Client(t, addr)
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []committedRecord
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		leader, err := client.Leader(topic, p)
		if err != nil {
			t.Fatal(err)
		}
		aborting := make(map[int64]bool) // producers whose open transaction was aborted
		var aborted []*sarama.AbortedTransaction
		for off := int64(0); off < end; {
			req := &sarama.FetchRequest{Version: 10, MaxBytes: 8 << 20, MaxWaitTime: 100, MinBytes: 1,
				Isolation: sarama.ReadCommitted, SessionEpoch: -1}
			req.AddBlock(topic, p, off, 4<<20, -1)
			resp, err := leader.Fetch(req)
			if err != nil {
				t.Fatal(err)
			}
			blk := resp.GetBlock(topic, p)
			if blk == nil || blk.Err != sarama.ErrNoError {
				t.Fatalf("fetch %s[%d] at %d: %v", topic, p, off, blk)
			}
			aborted = append(aborted, blk.AbortedTransactions...)
			moved := false
			for _, rs := range blk.RecordsSet {
				rb := rs.RecordBatch
				if rb == nil {
					t.Fatalf("%s[%d] at %d: not a v2 record batch", topic, p, off)
				}
				last := rb.FirstOffset + int64(rb.LastOffsetDelta)
				if last < off {
					continue
				}
				for _, a := range aborted {
					if a.ProducerID == rb.ProducerID && a.FirstOffset <= rb.FirstOffset && a.FirstOffset > -1 {
						aborting[a.ProducerID] = true
						a.FirstOffset = -1 // counted once
					}
				}
				switch {
				case rb.Control:
					if len(rb.Records) > 0 && isAbortMarker(rb.Records[0]) {
						delete(aborting, rb.ProducerID)
					}
				case rb.IsTransactional && aborting[rb.ProducerID]:
				default:
					for _, r := range rb.Records {
						if o := rb.FirstOffset + r.OffsetDelta; o >= off {
							out = append(out, committedRecord{p, o, r.Value})
						}
					}
				}
				off, moved = last+1, true
			}
			if !moved {
				t.Fatalf("fetch %s[%d] at %d of %d: no records", topic, p, off, end)
			}
		}
	}
	return out
}

// isAbortMarker reports whether a control record marks an abort: its key
// is version (int16) then type (int16), 0 for abort.
func isAbortMarker(r *sarama.Record) bool {
	return len(r.Key) >= 4 && r.Key[2] == 0 && r.Key[3] == 0
}

// checkCopiedOnce checks that out holds every record of the source
// partitions once: perPartition each, nothing else.
func checkCopiedOnce(t *testing.T, out []committedRecord, perPartition int) {
	t.Helper()
	seen := make(map[int32]map[int64]int)
	for _, r := range out {
		p, i := parseValue(t, string(r.value))
		if seen[p] == nil {
			seen[p] = make(map[int64]int)
		}
		seen[p][i]++
	}
	dups, missing := 0, 0
	for _, p := range parts4 {
		for i := range int64(perPartition) {
			switch n := seen[p][i]; {
			case n == 0:
				missing++
			case n > 1:
				dups += n - 1
			}
		}
	}
	if want := 4 * perPartition; len(out) != want || dups != 0 || missing != 0 {
		t.Fatalf("read_committed sees %d records, want %d: %d duplicates, %d missing", len(out), want, dups, missing)
	}
}
