package cmd

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/kafka"
)

// parseKafka runs the command line up to the point where the pipeline
// would start, without connecting, and returns the options.
func parseKafka(t *testing.T, args ...string) (*options, string, int) {
	t.Helper()
	var errb bytes.Buffer
	o := &options{streams: Streams{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &errb}}
	o.runHook = func(batcher.Config, sinkOpener) error { return nil }
	code := execute(o, args)
	return o, errb.String(), code
}

func TestKafkaFlags(t *testing.T) {
	t.Setenv(envPassword, "pw")
	o, stderr, code := parseKafka(t, "--kafka-brokers", "b1:9092, b2:9092", "--topic", "a", "--topic", "b,c", "--group", "g",
		"--from", "2024-05-01T10:00:00Z", "--until", "2024-05-02T10:00:00+02:00", "--until-end", "--limit", "10", "--envelope", "json", "--commit-interval", "250ms",
		"--kafka-timeout", "3s", "--kafka-session-timeout", "2s", "--kafka-cacert", "ca.pem", "--kafka-sasl", "scram-sha-256",
		"--kafka-user", "u", "--client-id", "me", "--isolation", "read_uncommitted", "--kafka-rebalance-timeout", "20s",
		"--rebalance-strategy", "cooperative-sticky", "file", "-")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	k := o.kafka
	if !reflect.DeepEqual(k.topics, []string{"a", "b", "c"}) || k.group != "g" || !k.untilEnd || k.limit != 10 ||
		k.envelope != "json" || k.commitInterval != 250*time.Millisecond || k.timeout != 3*time.Second {
		t.Fatalf("options %+v", k)
	}
	if !k.fromAt.Time.Equal(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)) || !k.untilAt.Equal(time.Date(2024, 5, 2, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("--from %v, --until %v", k.fromAt, k.untilAt)
	}
	// The connection, short of reading the CA file.
	o.kafka.caFile = ""
	conn, err := o.kafkaConn()
	if err != nil {
		t.Fatal(err)
	}
	want := kafka.Conn{Brokers: []string{"b1:9092", "b2:9092"}, ClientID: "me", SASL: "scram-sha-256", User: "u",
		Password: "pw", DialTimeout: 3 * time.Second, SessionTimeout: 2 * time.Second, ReadUncommitted: true,
		RebalanceTimeout: 20 * time.Second, Strategy: "cooperative-sticky"}
	if !reflect.DeepEqual(*conn, want) {
		t.Fatalf("conn\n got %+v\nwant %+v", *conn, want)
	}
}

// The instance id comes from the environment, set per host or pod, and
// counts only with a group: the host's other runs may read none.
func TestKafkaGroupInstanceIDFromEnv(t *testing.T) {
	t.Setenv(envBrokers, "k:9092")
	t.Setenv("BATCHPIPE_GROUP_INSTANCE_ID", "loader-0")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--topic", "t", "--group", "g", "file", "-"}, "loader-0"},
		{[]string{"--topic", "t", "--group", "g", "--group-instance-id", "loader-1", "file", "-"}, "loader-1"},
		{[]string{"--topic", "t", "file", "-"}, ""},
	} {
		o, stderr, code := parseKafka(t, tc.args...)
		if code != exitOK {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr)
		}
		conn, err := o.kafkaConn()
		if err != nil || conn.InstanceID != tc.want || conn.Strategy != "range" {
			t.Fatalf("%v: conn %+v, %v; want instance id %q", tc.args, conn, err, tc.want)
		}
	}
	// Without Kafka at all, the variable is not for this run.
	if _, stderr, code := parseKafka(t, "file", "-"); code != exitOK {
		t.Fatalf("stdin: exit %d: %s", code, stderr)
	}
}

func TestKafkaBrokersFromEnv(t *testing.T) {
	t.Setenv(envBrokers, "k:9092")
	o, stderr, code := parseKafka(t, "--topic", "t", "file", "-")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	conn, err := o.kafkaConn()
	if err != nil || !reflect.DeepEqual(conn.Brokers, []string{"k:9092"}) || conn.DialTimeout != 5*time.Second {
		t.Fatalf("conn %+v, %v", conn, err)
	}
}

func TestKafkaUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--until-end", "file", "-"}, "--until-end reads Kafka: give --topic too"},
		{map[string]string{"BATCHPIPE_GROUP": "g"}, []string{"file", "-"}, "--group reads Kafka"},
		{nil, []string{"--topic", "t", "--group", "g", "--partitions", "1", "file", "-"}, "--partitions and --group"},
		{nil, []string{"--topic", "t", "--partitions", "-1", "file", "-"}, "not a partition"},
		{nil, []string{"--topic", "t", "--limit", "-5", "file", "-"}, "--limit must not be negative"},
		{nil, []string{"--topic", "t", "--envelope", "avro", "file", "-"}, "--envelope takes json"},
		{nil, []string{"--topic", "t", "--from", "last tuesday", "file", "-"}, "--from"},
		{nil, []string{"--topic", "t", "--until", "24h", "file", "-"}, "--until"},
		{nil, []string{"--topic", "t", "--from", "-1h", "--until", "-2h", "file", "-"}, "is after --until"},
		{nil, []string{"--until", "-1h", "file", "-"}, "--until reads Kafka: give --topic too"},
		{nil, []string{"--topic", "t", "--commit-interval", "0", "file", "-"}, "--commit-interval must be positive"},
		{nil, []string{"--topic", "t", "--kafka-timeout", "0", "file", "-"}, "--kafka-timeout must be positive"},
		{nil, []string{"--topic", "t", "--isolation", "committed", "file", "-"}, "--isolation takes read_committed or read_uncommitted"},
		{nil, []string{"--isolation", "read_committed", "file", "-"}, "--isolation reads Kafka"},
		{nil, []string{"--topic", "t", "--kafka-rebalance-timeout", "0", "file", "-"}, "--kafka-rebalance-timeout must be positive"},
		{nil, []string{"--topic", "t", "--max-record-bytes", "1K", "file", "-"}, "--max-record-bytes is for stdin"},
		{nil, []string{"--topic", "t", "--group", "g", "--rebalance-strategy", "cooperative", "file", "-"}, "--rebalance-strategy takes range, roundrobin, sticky, cooperative-sticky"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, stderr, code := parseKafka(t, tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, %q; want exit 2 and %q", code, stderr, tc.want)
			}
		})
	}
}

func TestKafkaConnUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		password string
		args     []string
		want     string
	}{
		{"", []string{"--topic", "t", "file", "-"}, "Kafka needs brokers"},
		{"", []string{"--kafka-brokers", "b:1", "--topic", "t", "--kafka-sasl", "plain", "--kafka-user", "u", "file", "-"}, envPassword},
		{"pw", []string{"--kafka-brokers", "b:1", "--topic", "t", "--kafka-sasl", "plain", "file", "-"}, "needs a user name"},
		{"pw", []string{"--kafka-brokers", "b:1", "--topic", "t", "--kafka-sasl", "kerberos", "--kafka-user", "u", "file", "-"}, "unknown SASL mechanism"},
		{"", []string{"--kafka-brokers", "b:1", "--topic", "t", "--kafka-cert", "c.pem", "file", "-"}, "both the certificate and the key"},
		{"", []string{"--kafka-brokers", "b:1", "--topic", "t", "--group", "g", "--group-instance-id", "a/b", "file", "-"}, `--group-instance-id "a/b": letters, digits`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Setenv(envBrokers, "")
			t.Setenv(envPassword, tc.password)
			o, stderr, code := parseKafka(t, tc.args...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			_, err := o.kafkaConn()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if tc.password != "" && strings.Contains(err.Error(), tc.password) {
				t.Fatalf("the error repeats the password: %v", err)
			}
		})
	}
}

// An instance id Kafka would refuse is a mistake in the command line:
// exit 2, with the hint, told by kafka.ErrInstanceID.
func TestKafkaBadInstanceIDIsUsage(t *testing.T) {
	t.Setenv(envBrokers, "")
	o, stderr, code := parseKafka(t, "--kafka-brokers", "b:1", "--topic", "t", "--group", "g", "--group-instance-id", "a/b", "file", "-")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	_, err := o.kafkaConn()
	if code, hint := errorStatus(err); code != exitUsage || !hint {
		t.Errorf("%v: exit %d, hint %v; want %d with the hint", err, code, hint, exitUsage)
	}
	want := `--group-instance-id "a/b": letters, digits, '.', '_' and '-' only, at most 249 of them`
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

// The Kafka examples of the root help parse.
func TestKafkaExamplesParse(t *testing.T) {
	n := 0
	for _, ex := range examples(t, rootExamples) {
		if !slices.Contains(ex.args, "--topic") {
			continue
		}
		n++
		_, stderr, code := parseKafka(t, ex.args...)
		if code != exitOK {
			t.Errorf("example %q: exit %d: %s", ex.line, code, stderr)
		}
	}
	if n < 2 {
		t.Errorf("%d Kafka examples, want 2", n)
	}
}

// BATCHPIPE_TOPIC, which the exec sink gives its commands, does not turn a
// batchpipe they run into a Kafka consumer.
func TestTopicNotFromEnv(t *testing.T) {
	t.Setenv("BATCHPIPE_TOPIC", "orders")
	t.Setenv(envBrokers, "k:9092")
	o, stderr, code := parseKafka(t, "file", "-")
	if code != exitOK || o.kafka.enabled() {
		t.Fatalf("exit %d, topics %v: %s", code, o.kafka.topics, stderr)
	}
}

// --kafka-brokers alone is a usage error on the command line, but not from
// the environment, set for every run, nor for the kafka sink or a Kafka
// dead letter.
func TestKafkaBrokersNeedKafka(t *testing.T) {
	if _, stderr, code := parseKafka(t, "--kafka-brokers", "k:9092", "file", "-"); code != exitUsage || !strings.Contains(stderr, "--kafka-brokers is for Kafka") {
		t.Errorf("--kafka-brokers, file: exit %d: %s", code, stderr)
	}
	if _, stderr, code := parseKafka(t, "--kafka-brokers", "k:9092", "--dead-letter", "kafka:dl", "file", "-"); code != exitOK {
		t.Errorf("--kafka-brokers, a Kafka dead letter: exit %d: %s", code, stderr)
	}
	t.Setenv(envBrokers, "k:9092")
	if _, stderr, code := parseKafka(t, "file", "-"); code != exitOK {
		t.Errorf("%s set, file: exit %d: %s", envBrokers, code, stderr)
	}
}
