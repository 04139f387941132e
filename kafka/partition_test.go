package kafka

import "testing"

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

func TestKeyPartitioner(t *testing.T) {
	for name, want := range map[string]int32{
		PartitionMurmur2: Murmur2Partition([]byte("foobar"), 7),
		"":               Murmur2Partition([]byte("foobar"), 7),
		// librdkafka's consistent partitioner: crc32("foobar") = 0x9ef61f95.
		PartitionCRC32: int32(0x9ef61f95 % 7),
	} {
		p, err := KeyPartitioner(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := p([]byte("foobar"), 7); got != want {
			t.Errorf("%s: foobar in partition %d, want %d", name, got, want)
		}
	}
	random, _ := KeyPartitioner(PartitionRandom)
	for range 100 {
		if got := random([]byte("foobar"), 3); got < 0 || got >= 3 {
			t.Fatalf("random: partition %d of 3", got)
		}
	}
	if _, err := KeyPartitioner("fnv"); err == nil {
		t.Error("fnv accepted")
	}
}
