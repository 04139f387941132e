package e2e

// End-to-end tests of the Kafka sink: batchpipe produces to kfake, or to
// the real broker of BATCHPIPE_TEST_KAFKA, and the test reads back what
// landed.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// stdin → Kafka: every line lands once, bytes exact (binary ones too), in
// input order within each partition; records without a key spread over
// the partitions a batch at a time.
func TestKafkaSinkStdinExact(t *testing.T) {
	k := newKafka(t, 4)
	var in bytes.Buffer
	const n = 20000
	for i := range n {
		fmt.Fprintf(&in, "%06d %s\xff\x00\x01\r\n", i, strings.Repeat("x", i%50))
	}
	r := run(t, bytes.NewReader(in.Bytes()), "-n", "500", "kafka", "--brokers", k.addr, k.topic)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	seen := make([]bool, n)
	got := byPartition(t, k.addr, k.topic)
	for p, msgs := range got {
		last := -1
		for _, m := range msgs {
			i, err := strconv.Atoi(string(m.Value[:6]))
			if err != nil || string(m.Value) != fmt.Sprintf("%06d %s\xff\x00\x01\r", i, strings.Repeat("x", i%50)) {
				t.Fatalf("partition %d offset %d: %q is not an input line", p, m.Offset, m.Value)
			}
			if seen[i] {
				t.Fatalf("line %d produced twice", i)
			}
			if i < last {
				t.Fatalf("partition %d: line %d after line %d", p, i, last)
			}
			if m.Key != nil {
				t.Fatalf("line %d has key %q, want none", i, m.Key)
			}
			seen[i], last = true, i
		}
	}
	if i := slices.Index(seen, false); i >= 0 {
		t.Fatalf("line %d not produced", i)
	}
	if len(got) != 4 {
		t.Fatalf("records in %d partitions, want all 4 (a batch each in turn)", len(got))
	}
}

// Keys are placed where the Java client puts them: the partition of each
// is computed here from the murmur2 values of Kafka's own tests.
func TestKafkaSinkKeysJavaPartitions(t *testing.T) {
	k := newKafka(t, 0)
	keys, crc := k.name("keys"), k.name("crc")
	kafkatest.CreateTopic(t, k.addr, keys, 10)
	kafkatest.CreateTopic(t, k.addr, crc, 10)
	java := map[string]int32{ // murmur2 as org.apache.kafka.common.utils.Utils computes it
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
		"":    275646681,
	}
	var in strings.Builder
	for k := range java {
		fmt.Fprintf(&in, "%s\tvalue of %s\n", k, k)
	}
	in.WriteString("no delimiter here\n")
	for _, topic := range []string{keys, crc} {
		args := []string{"-n", "3", "kafka", "--brokers", k.addr, "--key-delimiter", `\t`, topic}
		if topic == crc {
			args = append(args[:len(args)-1], "--partitioner", "crc32", topic)
		}
		r := run(t, strings.NewReader(in.String()), args...)
		if r.code != 0 {
			t.Fatalf("%s: exit %d:\n%s", topic, r.code, r.stderr)
		}
	}
	msgs := readTopic(t, k.addr, keys)
	if len(msgs) != len(java)+1 {
		t.Fatalf("%d records, want %d", len(msgs), len(java)+1)
	}
	for _, m := range msgs {
		if m.Key == nil {
			if string(m.Value) != "no delimiter here" {
				t.Fatalf("record %q without a key", m.Value)
			}
			continue
		}
		h, ok := java[string(m.Key)]
		if !ok || string(m.Value) != "value of "+string(m.Key) {
			t.Fatalf("key %q value %q", m.Key, m.Value)
		}
		// Java's toPositive: the sign bit cleared.
		if want := int32(uint32(h)&0x7fffffff) % 10; m.Partition != want {
			t.Errorf("key %q in partition %d, want %d as the Java client", m.Key, m.Partition, want)
		}
	}
	// "foobar": crc32 0x9ef61f95, librdkafka's consistent partitioner.
	for _, m := range readTopic(t, k.addr, crc) {
		if string(m.Key) == "foobar" && m.Partition != int32(0x9ef61f95%10) {
			t.Errorf("crc32: foobar in partition %d, want %d", m.Partition, 0x9ef61f95%10)
		}
	}
}

// A drain with --envelope json then a replay with --unwrap is an exact
// copy: null and empty keys, null values, duplicate headers in order,
// binary and JSON values, timestamps and partitions.
func TestKafkaSinkEnvelopeRoundTrip(t *testing.T) {
	k := newKafka(t, 3)
	addr, restored := k.addr, k.name("restored")
	kafkatest.CreateTopic(t, addr, restored, 3)
	p := newProducer(t, addr).p
	// A recent time: a real broker deletes records older than its
	// retention (7 days), which would empty the topic mid-test.
	ts := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	dup := []sarama.RecordHeader{{Key: []byte("h"), Value: []byte("1")}, {Key: []byte("bin"), Value: []byte{0xff, 0}},
		{Key: []byte("h"), Value: []byte("2")}, {Key: []byte("h"), Value: []byte{}}}
	orig := []*sarama.ProducerMessage{
		{Partition: 0, Value: sarama.StringEncoder("null key")},
		{Partition: 0, Key: sarama.ByteEncoder{}, Value: sarama.StringEncoder("empty key")},
		{Partition: 1, Key: sarama.StringEncoder("k"), Headers: dup, Value: sarama.ByteEncoder{0xde, 0xad, 0x00, 0xff, '\n'}},
		{Partition: 1, Key: sarama.StringEncoder("tomb")}, // a null value
		{Partition: 2, Key: sarama.StringEncoder(`{"id":1}`), Value: sarama.StringEncoder(`{"a": [1, 2],` + "\n" + `"b": "x"}`)},
		{Partition: 2, Key: sarama.StringEncoder(`"quoted"`), Value: sarama.StringEncoder(`{"compact":true}`)},
		{Partition: 2, Key: sarama.StringEncoder("null"), Value: sarama.StringEncoder(`""`)},
		{Partition: 2, Value: sarama.ByteEncoder{}},
	}
	for _, m := range orig {
		m.Topic, m.Timestamp = k.topic, ts
	}
	if err := p.SendMessages(orig); err != nil {
		t.Fatal(err)
	}

	backup := filepath.Join(t.TempDir(), "backup.ndjson")
	r := run(t, nil, "--kafka-brokers", addr, "--topic", k.topic, "--until-end", "--envelope", "json", "file", backup)
	if r.code != 0 {
		t.Fatalf("backup: exit %d:\n%s", r.code, r.stderr)
	}
	f, err := os.Open(backup)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r = run(t, f, "--kafka-brokers", addr, "kafka", "--unwrap", restored)
	if r.code != 0 {
		t.Fatalf("restore: exit %d:\n%s", r.code, r.stderr)
	}
	want, got := byPartition(t, addr, k.topic), byPartition(t, addr, restored)
	for part := range int32(3) {
		if len(got[part]) != len(want[part]) {
			t.Fatalf("partition %d: %d records, want %d", part, len(got[part]), len(want[part]))
		}
		for i, w := range want[part] {
			g := got[part][i]
			same := (g.Key == nil) == (w.Key == nil) && bytes.Equal(g.Key, w.Key) &&
				(g.Value == nil) == (w.Value == nil) && bytes.Equal(g.Value, w.Value) &&
				g.Timestamp.Equal(w.Timestamp) && len(g.Headers) == len(w.Headers)
			for j := 0; same && j < len(w.Headers); j++ {
				same = bytes.Equal(g.Headers[j].Key, w.Headers[j].Key) && bytes.Equal(g.Headers[j].Value, w.Headers[j].Value)
			}
			if !same {
				t.Errorf("partition %d record %d:\n got key %q value %q headers %v at %v\nwant key %q value %q headers %v at %v",
					part, i, g.Key, g.Value, g.Headers, g.Timestamp, w.Key, w.Value, w.Headers, w.Timestamp)
			}
		}
	}

	// A line that is no envelope is rejected on its own, with the reason.
	dl := filepath.Join(t.TempDir(), "dead")
	r = run(t, strings.NewReader(`{"value":"ok"}`+"\nnot json\n"+`{"key":"k"}`+"\n"), "--kafka-brokers", addr,
		"--dead-letter", dl, "kafka", "--unwrap", restored)
	if r.code != 3 || !strings.Contains(r.stderr, "not an envelope") || readFile(t, dl) != "not json\n{\"key\":\"k\"}\n" {
		t.Fatalf("exit %d, dead letters %q:\n%s", r.code, readFile(t, dl), r.stderr)
	}
}

// Kafka → Kafka: records keep their key, headers and timestamp.
func TestKafkaSinkFromKafka(t *testing.T) {
	k := newKafka(t, 2)
	addr, copyTopic, values := k.addr, k.name("copy"), k.name("values")
	kafkatest.CreateTopic(t, addr, copyTopic, 2)
	newProducer(t, addr).produce(k.topic, []int32{0, 1}, 1000)
	r := run(t, nil, "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--until-end", "-n", "300",
		"kafka", copyTopic)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	src := make(map[string]*sarama.ConsumerMessage)
	for _, m := range readTopic(t, addr, k.topic) {
		src[string(m.Value)] = m
	}
	copied := readTopic(t, addr, copyTopic)
	if len(copied) != len(src) {
		t.Fatalf("%d records copied, want %d", len(copied), len(src))
	}
	for _, m := range copied {
		s, ok := src[string(m.Value)]
		if !ok || string(m.Key) != string(s.Key) || !m.Timestamp.Equal(s.Timestamp) ||
			len(m.Headers) != 1 || string(m.Headers[0].Value) != string(s.Headers[0].Value) {
			t.Fatalf("copy %q key %q headers %v at %v does not match its source", m.Value, m.Key, m.Headers, m.Timestamp)
		}
		// Same key, same partition count: same partition as the source's
		// producer (sarama's hash) is not promised; the Java one's is.
		if want := int32(uint32(murmur2(m.Key))&0x7fffffff) % 2; m.Partition != want {
			t.Fatalf("key %q in partition %d, want %d", m.Key, m.Partition, want)
		}
	}

	// --keep-meta=false: the values alone.
	kafkatest.CreateTopic(t, addr, values, 2)
	r = run(t, nil, "--kafka-brokers", addr, "--topic", k.topic, "--until-end", "kafka", "--keep-meta=false", values)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	vals := readTopic(t, addr, values)
	if len(vals) != len(src) {
		t.Fatalf("%d values, want %d", len(vals), len(src))
	}
	for _, m := range vals {
		if _, ok := src[string(m.Value)]; !ok || m.Key != nil || len(m.Headers) != 0 {
			t.Fatalf("value %q key %q headers %v: want the value alone", m.Value, m.Key, m.Headers)
		}
	}
}

// murmur2 is Kafka's, written out again here so the test does not trust
// the code it tests.
func murmur2(b []byte) int32 {
	const m = 0x5bd1e995
	h := uint32(0x9747b28c) ^ uint32(len(b))
	for ; len(b) >= 4; b = b[4:] {
		k := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
		k *= m
		k ^= k >> 24
		k *= m
		h = h*m ^ k
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// A 2 MB record is rejected on its own and the rest of its batch is
// delivered: refused by the producer at --max-message-bytes, or, above the
// topic's max.message.bytes (1,000,000 bytes), by the broker, which judges
// a record batch whole.
func TestKafkaSinkRecordTooLarge(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		why  string
	}{
		{"producer", nil, "larger than the largest the producer sends"},
		{"broker", []string{"--max-message-bytes", "8000000"}, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKafka(t, 0)
			addr, topic := k.addr, k.name("big")
			kafkatest.CreateTopic(t, addr, topic, 1, "max.message.bytes", "1000000")
			var in bytes.Buffer
			for i := range 100 {
				if i == 50 {
					in.WriteString(strings.Repeat("L", 2<<20) + "\n")
				}
				fmt.Fprintf(&in, "small %d\n", i)
			}
			dl := filepath.Join(t.TempDir(), "dead")
			// One batch: the large record among small ones.
			args := append([]string{"-n", "1000", "-b", "4MB", "--dead-letter", dl, "kafka", "--brokers", addr}, tc.args...)
			r := run(t, &in, append(args, topic)...)
			if r.code != 3 || !strings.Contains(r.stderr, tc.why) {
				t.Fatalf("exit %d, want 3 saying %q:\n%s", r.code, tc.why, r.stderr)
			}
			if d := readFile(t, dl); len(d) != 2<<20+1 || strings.Trim(d, "L\n") != "" {
				t.Fatalf("dead letter of %d bytes, want the large record", len(d))
			}
			msgs := readTopic(t, addr, topic)
			if len(msgs) != 100 {
				t.Fatalf("%d records in the topic, want the 100 small ones", len(msgs))
			}
			for i, m := range msgs {
				if string(m.Value) != fmt.Sprintf("small %d", i) {
					t.Fatalf("record %d: %.40q", i, m.Value)
				}
			}
		})
	}
}

// A missing topic, or brokers that cannot be reached: batchpipe says so at
// once, reading nothing (its stdin stays open), and exits 69, an outage;
// no brokers given is a mistake in the command, exit 2.
func TestKafkaSinkUnusableAtStart(t *testing.T) {
	k := newKafka(t, 1)
	missing := k.name("nope")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"kafka", "--brokers", k.addr, missing}, fmt.Sprintf("kafka sink: topic %q does not exist", missing), 69},
		{[]string{"--kafka-timeout", "1s", "kafka", "--brokers", closed, k.topic}, "kafka sink: kafka: connect to " + closed, 69},
		{[]string{"kafka", k.topic}, "kafka: give --brokers, or --kafka-brokers, or set BATCHPIPE_KAFKA_BROKERS", 2},
	} {
		t.Run(tc.want, func(t *testing.T) {
			p := start(t, tc.args...)
			p.waitFor(tc.want)
			if code := p.wait(); code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, p.stderr())
			}
			p.stdin.Close()
		})
	}
}

// The sink connects with the source's SASL flags; a wrong password is a
// usage error that does not repeat it. On the real broker: PLAIN and
// SCRAM-SHA-256 on its SASL_PLAINTEXT listener.
func TestKafkaSinkSASL(t *testing.T) {
	k, logins := saslKafka(t, "scram-sha-256", "writer", "PASS-e2e-2")
	for _, l := range logins {
		t.Run(l.mechanism, func(t *testing.T) {
			t.Setenv("BATCHPIPE_KAFKA_PASSWORD", "not-the-pass")
			args := []string{"--kafka-sasl", l.mechanism, "--kafka-user", l.user, "kafka", "--brokers", l.addr, k.topic}
			r := run(t, strings.NewReader("a\nb\n"), args...)
			// kfake hangs up without a word, and batchpipe says what that
			// may mean; Kafka says it.
			said := strings.Contains(r.stderr, "SASL user and password") || strings.Contains(r.stderr, "SASL Authentication failed")
			if r.code != 2 || strings.Contains(r.stderr, "not-the-pass") || !said {
				t.Fatalf("wrong password: exit %d, stderr:\n%s", r.code, r.stderr)
			}
			t.Setenv("BATCHPIPE_KAFKA_PASSWORD", l.pass)
			r = run(t, strings.NewReader("a\nb\n"), args...)
			if r.code != 0 || !strings.Contains(r.stderr, "2 delivered in 1 batch") {
				t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
			}
		})
	}
	// kfake with SASL takes no records from the test's reader.
	if realKafka != nil {
		var got []string
		for _, m := range readTopic(t, k.addr, k.topic) {
			got = append(got, string(m.Value))
		}
		if want := []string{"a", "b", "a", "b"}; !slices.Equal(got, want) {
			t.Fatalf("topic holds %q, want %q", got, want)
		}
	}
}

// Every --compression produces records a consumer reads back as sent; on
// kfake, which shows the test each produce request, in record batches of
// that codec.
func TestKafkaSinkCompression(t *testing.T) {
	k := newKafka(t, 1)
	addr := k.addr
	// The codec of each topic's record batches, from their attributes.
	var mu sync.Mutex
	codecs := make(map[string]int16)
	if c := k.fake; c != nil {
		c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			for _, tp := range req.(*kmsg.ProduceRequest).Topics {
				for _, p := range tp.Partitions {
					if len(p.Records) > 22 {
						mu.Lock()
						codecs[tp.Topic] = int16(binary.BigEndian.Uint16(p.Records[21:])) & 7
						mu.Unlock()
					}
				}
			}
			return nil, nil, false
		})
	}
	var in strings.Builder
	for i := range 500 {
		fmt.Fprintf(&in, "record %d %s\n", i, strings.Repeat("compressible ", 10))
	}
	for want, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		topic := k.name(codec)
		kafkatest.CreateTopic(t, addr, topic, 1)
		r := run(t, strings.NewReader(in.String()), "-n", "200", "kafka", "--brokers", addr, "--compression", codec, topic)
		if r.code != 0 {
			t.Fatalf("%s: exit %d:\n%s", codec, r.code, r.stderr)
		}
		var got strings.Builder
		for _, m := range readTopic(t, addr, topic) {
			got.Write(m.Value)
			got.WriteByte('\n')
		}
		if got.String() != in.String() {
			t.Fatalf("%s: the records read back differ from those sent", codec)
		}
		if k.fake == nil {
			continue
		}
		mu.Lock()
		if codecs[topic] != int16(want) {
			t.Errorf("%s: record batches of codec %d, want %d", codec, codecs[topic], want)
		}
		mu.Unlock()
	}
}

// Stdin to Kafka sets the garbage collector no soft memory limit: the
// sink's client holds buffers outside the bound the limit is computed
// from, and under it the collector ran without end, taking ten times the
// CPU. Stdin to a file keeps its limit.
func TestKafkaSinkNoSoftMemoryLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "") // restored at the end
	os.Unsetenv("GOMEMLIMIT")
	k := newKafka(t, 1)
	r := run(t, strings.NewReader("a\n"), "-v", "kafka", "--brokers", k.addr, k.topic)
	if r.code != 0 || !strings.Contains(r.stderr, `msg="no soft memory limit"`) {
		t.Fatalf("kafka sink: exit %d, want no soft memory limit:\n%s", r.code, r.stderr)
	}
	r = run(t, strings.NewReader("a\n"), "-v", "file", filepath.Join(t.TempDir(), "out"))
	if r.code != 0 || !strings.Contains(r.stderr, `msg="soft memory limit" bytes=`) {
		t.Fatalf("file sink: exit %d, want a soft memory limit:\n%s", r.code, r.stderr)
	}
}

// --partition-by with the Kafka sink, five batches in flight: a key's
// batches go one after another, and each key's records land in its
// partition once each, in input order.
func TestKafkaSinkPartitionByKeepsOrder(t *testing.T) {
	k := newKafka(t, 4)
	keys := []string{"a", "b", "c", "d", "e"}
	const n = 400
	r := run(t, strings.NewReader(keyTurnsInput(keys, n)), "--partition-by", "{field:1}", "--field-delimiter", " ",
		"--max-open-keys", "2", "-n", "3", "-j", "5", "kafka", "--brokers", k.addr, "--key-delimiter", " ", k.topic)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	var got strings.Builder
	for _, msgs := range byPartition(t, k.addr, k.topic) {
		for _, m := range msgs {
			fmt.Fprintf(&got, "%s %s\n", m.Key, m.Value)
		}
	}
	checkKeyTurns(t, got.String(), keys, n)
}

// Keyed records, five batches in flight: each key's records land in its
// partition once each, in the order read.
func TestKafkaSinkKeysKeepOrder(t *testing.T) {
	checkKeysKeepOrder(t, newKafka(t, 4))
}

// The same, with the first produce request refused (a partition whose
// leader is not ready) on partitions that hold records already: a broker
// then takes any first sequence number of a producer id, so the record
// batches sent behind the refused one could be written before it.
func TestKafkaSinkKeysKeepOrderFirstRefused(t *testing.T) {
	k := fakeKafka(t, "a produce request refused", 4)
	var seeds []*sarama.ProducerMessage
	for p := range int32(4) {
		seeds = append(seeds, &sarama.ProducerMessage{Topic: k.topic, Partition: p, Value: sarama.StringEncoder("seed")})
	}
	kafkatest.Send(t, kafkatest.NewProducer(t, k.addr), seeds)
	var refused atomic.Bool
	k.fake.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		refused.Store(true)
		return kafkatest.RefuseProduce(r, kerr.NotLeaderForPartition.Code), nil, true
	})
	checkKeysKeepOrder(t, k)
	if !refused.Load() {
		t.Fatal("no produce request refused")
	}
}

// checkKeysKeepOrder produces 200000 records of 10 keys to k.topic, of 4
// partitions, in batches of 1000, five at once, each sent as several
// record batches a partition (--max-message-bytes), and checks that each
// key's records land once each, in the order read. Records without a key
// are left out.
func checkKeysKeepOrder(t *testing.T, k *kafkaEnv) {
	t.Helper()
	var keys []string
	for i := range 10 {
		keys = append(keys, fmt.Sprintf("k%d", i))
	}
	const n = 20000 // per key
	r := run(t, strings.NewReader(keyTurnsInput(keys, n)), "-j", "5", "-n", "1000",
		"kafka", "--brokers", k.addr, "--key-delimiter", " ", "--max-message-bytes", "2000", k.topic)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	var got strings.Builder
	for _, msgs := range byPartition(t, k.addr, k.topic) {
		for _, m := range msgs {
			if m.Key != nil {
				fmt.Fprintf(&got, "%s %s\n", m.Key, m.Value)
			}
		}
	}
	checkKeyTurns(t, got.String(), keys, n)
}
