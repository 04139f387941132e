package kafka

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
)

// Partitioners of the Kafka sink, by --partitioner name.
const (
	PartitionMurmur2 = "murmur2" // the Java client's: where Java and kcat -X partitioner=murmur2_random put a key
	PartitionCRC32   = "crc32"   // librdkafka's "consistent": what older batchpipe producers used
	PartitionRandom  = "random"  // keys ignored
)

// Murmur2 is Kafka's murmur2 hash as the Java client computes it
// (org.apache.kafka.common.utils.Utils.murmur2), as an int32 like Java's.
func Murmur2(data []byte) int32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	n := len(data)
	h := uint32(seed) ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := binary.LittleEndian.Uint32(data[i:])
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n&^3:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// Murmur2Partition is the partition the Java client's default
// partitioner gives a key: toPositive(murmur2(key)) % partitions.
func Murmur2Partition(key []byte, partitions int32) int32 {
	return (Murmur2(key) & 0x7fffffff) % partitions
}

// CRC32Partition is librdkafka's consistent partitioner: the CRC-32
// (IEEE) of the key, unsigned, modulo the partitions.
func CRC32Partition(key []byte, partitions int32) int32 {
	return int32(crc32.ChecksumIEEE(key) % uint32(partitions))
}

// KeyPartitioner returns the placement of keyed records named by
// --partitioner.
func KeyPartitioner(name string) (func(key []byte, partitions int32) int32, error) {
	switch name {
	case PartitionMurmur2, "":
		return Murmur2Partition, nil
	case PartitionCRC32:
		return CRC32Partition, nil
	case PartitionRandom:
		return func(_ []byte, n int32) int32 { return rand.Int32N(n) }, nil
	}
	return nil, fmt.Errorf("unknown partitioner %q (murmur2, crc32, random)", name)
}
