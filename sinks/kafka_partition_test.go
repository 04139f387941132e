package sinks

import (
	"testing"

	"github.com/IBM/sarama"
)

// The vectors of Kafka's own test of its murmur2 (UtilsTest.testMurmur2 in
// the Java client), and the empty key.
var murmur2Vectors = []struct {
	key  string
	hash int32
}{
	{"21", -973932308},
	{"foobar", -790332482},
	{"a-little-bit-long-string", -985981536},
	{"a-little-bit-longer-string", -1486304829},
	{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
	{"abc", 479470107},
	{"", 275646681},
}

func TestMurmur2JavaVectors(t *testing.T) {
	for _, v := range murmur2Vectors {
		if got := Murmur2([]byte(v.key)); got != v.hash {
			t.Errorf("murmur2(%q) = %d, want %d", v.key, got, v.hash)
		}
	}
}

// The partition is toPositive (the sign bit cleared, not the absolute
// value) modulo the partitions, as Java's.
func TestMurmur2Partition(t *testing.T) {
	for _, v := range murmur2Vectors {
		for _, n := range []int32{1, 3, 7, 100} {
			want := int32(int64(uint32(v.hash)&0x7fffffff) % int64(n))
			if got := Murmur2Partition([]byte(v.key), n); got != want {
				t.Errorf("%q of %d partitions: %d, want %d", v.key, n, got, want)
			}
		}
	}
	// -973932308 & 0x7fffffff = 1173551340; its absolute value would give 8.
	if got := Murmur2Partition([]byte("21"), 10); got != 0 {
		t.Errorf("\"21\" of 10 partitions: %d, want 0", got)
	}
}

func TestKafkaPartitioner(t *testing.T) {
	mk, err := NewKafkaPartitioner(PartitionMurmur2)
	if err != nil {
		t.Fatal(err)
	}
	p := mk("t")
	for _, tc := range []struct {
		msg  sarama.ProducerMessage
		want int32
	}{
		{sarama.ProducerMessage{Partition: 5, Key: sarama.StringEncoder("21")}, 5}, // set by the sink
		{sarama.ProducerMessage{Partition: -1, Key: sarama.StringEncoder("foobar")}, Murmur2Partition([]byte("foobar"), 12)},
		{sarama.ProducerMessage{Partition: -1, Key: sarama.ByteEncoder{}}, Murmur2Partition(nil, 12)},
	} {
		if got, err := p.Partition(&tc.msg, 12); got != tc.want || err != nil {
			t.Errorf("%+v: %d, %v; want %d", tc.msg, got, err, tc.want)
		}
	}
	crc, _ := NewKafkaPartitioner(PartitionCRC32)
	// librdkafka's consistent partitioner: crc32("foobar") = 0x9ef61f95.
	if got, _ := crc("t").Partition(&sarama.ProducerMessage{Partition: -1, Key: sarama.StringEncoder("foobar")}, 7); got != int32(0x9ef61f95%7) {
		t.Errorf("crc32: %d", got)
	}
	if _, err := NewKafkaPartitioner("fnv"); err == nil {
		t.Error("fnv accepted")
	}
}
