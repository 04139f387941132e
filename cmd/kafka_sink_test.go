package cmd

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/batchpipe/batchpipe/kafka"
)

func TestKafkaSinkFlags(t *testing.T) {
	for _, tc := range []struct {
		opts           kafkaSinkOptions
		partitionerSet bool
		want           kafka.ProducerConfig
		compression    string // as the codec names itself
	}{
		{kafkaSinkOptions{partitioner: "murmur2", keepMeta: true, compression: "none", maxMessageBytes: 1},
			false, kafka.ProducerConfig{Topic: "t", KeepMeta: true}, "none"},
		{kafkaSinkOptions{partitioner: "crc32", keyDelimiter: `\t`, compression: "zstd", maxMessageBytes: 1},
			true, kafka.ProducerConfig{Topic: "t", KeyDelimiter: []byte("\t")}, "zstd"},
		{kafkaSinkOptions{partitioner: "murmur2", keyDelimiter: "::", compression: "lz4", maxMessageBytes: 1},
			false, kafka.ProducerConfig{Topic: "t", KeyDelimiter: []byte("::")}, "lz4"},
		// The envelope's partition is kept unless a partitioner is asked for.
		{kafkaSinkOptions{partitioner: "murmur2", unwrap: true, compression: "gzip", maxMessageBytes: 1},
			false, kafka.ProducerConfig{Topic: "t", Unwrap: true, KeepPartition: true}, "gzip"},
		{kafkaSinkOptions{partitioner: "random", unwrap: true, compression: "snappy", maxMessageBytes: 1},
			true, kafka.ProducerConfig{Topic: "t", Unwrap: true}, "snappy"},
	} {
		cfg, popts, err := tc.opts.config("t", tc.partitionerSet)
		if err != nil {
			t.Fatalf("%+v: %v", tc.opts, err)
		}
		if cfg.Partitioner == nil {
			t.Fatalf("%+v: no partitioner", tc.opts)
		}
		cfg.Partitioner = nil
		if !reflect.DeepEqual(cfg, tc.want) || popts.Compression.String() != tc.compression || popts.MaxMessageBytes != 1 {
			t.Errorf("%+v:\n got %+v %+v\nwant %+v", tc.opts, cfg, popts, tc.want)
		}
	}
}

func TestKafkaSinkUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"kafka", "--brokers", "b:1"}, "kafka: give one TOPIC"},
		{[]string{"kafka", "--brokers", "b:1", "a", "b"}, "kafka: give one TOPIC"},
		{[]string{"kafka", "t"}, "kafka: give --brokers, or --kafka-brokers, or set " + envBrokers},
		{[]string{"kafka", "--brokers", "b:1", "--partitioner", "fnv", "t"}, "unknown partitioner"},
		{[]string{"kafka", "--brokers", "b:1", "--compression", "brotli", "t"}, "--compression takes none, gzip"},
		{[]string{"kafka", "--brokers", "b:1", "--unwrap", "-K", ":", "t"}, "--unwrap and --key-delimiter"},
		{[]string{"kafka", "--brokers", "b:1", "--max-message-bytes", "0", "t"}, "--max-message-bytes must be at least 1"},
		{[]string{"--kafka-sasl", "plain", "--kafka-user", "u", "kafka", "--brokers", "b:1", "t"}, envPassword},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Setenv(envBrokers, "")
			t.Setenv(envPassword, "")
			_, stderr, code := parseKafka(t, tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, %q; want exit 2 and %q", code, stderr, tc.want)
			}
		})
	}
}

// --brokers wins; else the source's brokers, from the flag or the
// environment. TLS and SASL are the source's.
func TestKafkaSinkBrokers(t *testing.T) {
	t.Setenv(envBrokers, "env:9092")
	t.Setenv(envPassword, "pw")
	o, stderr, code := parseKafka(t, "--kafka-sasl", "plain", "--kafka-user", "u", "kafka", "t")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, tc := range []struct {
		flag, source string
		want         []string
	}{
		{"", "", []string{"env:9092"}},
		{"", "src:9092", []string{"src:9092"}},
		{"a:1,b:2", "src:9092", []string{"a:1", "b:2"}},
	} {
		o.kafka.brokers = tc.source
		conn, err := o.sinkConn(tc.flag)
		if err != nil || !reflect.DeepEqual(conn.Brokers, tc.want) || conn.SASL != "plain" || conn.Password != "pw" {
			t.Errorf("--brokers %q, --kafka-brokers %q: %+v, %v", tc.flag, tc.source, conn, err)
		}
	}
}

// The kafka sink's examples parse.
func TestKafkaSinkExamplesParse(t *testing.T) {
	n := 0
	for _, ex := range examples(t, kafkaSinkExamples) {
		if !slices.Contains(ex.args, "kafka") {
			continue
		}
		n++
		_, stderr, code := parseKafka(t, ex.args...)
		if code != exitOK {
			t.Errorf("example %q: exit %d: %s", ex.line, code, stderr)
		}
	}
	if n < 3 {
		t.Errorf("%d examples, want 3", n)
	}
}
