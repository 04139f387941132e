package cmd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/batchpipe/batchpipe/kafka"
	"github.com/spf13/pflag"
)

// Environment variables read for Kafka. The password is never a flag, so it
// stays out of ps and shell history.
const (
	envBrokers  = "BATCHPIPE_KAFKA_BROKERS"
	envPassword = "BATCHPIPE_KAFKA_PASSWORD"
)

// kafkaOptions are the flags of the Kafka source and dead letter.
type kafkaOptions struct {
	brokers        string
	topics         []string
	clientID       string
	partitions     []int32
	from           string
	group          string
	untilEnd       bool
	until          string
	isolation      string
	limit          int64
	envelope       string
	commitInterval time.Duration
	timeout        time.Duration
	sessionTimeout time.Duration
	rebalance      time.Duration
	exactlyOnce    bool
	instanceID     string
	strategy       string

	// --from and --until, resolved once, at start, by checkKafka.
	fromAt  kafka.From
	untilAt time.Time

	tls      bool
	caFile   string
	certFile string
	keyFile  string
	sasl     string
	user     string
}

func (k *kafkaOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&k.brokers, "kafka-brokers", "", "read from Kafka: comma-separated host:port list (default $"+envBrokers+")")
	f.StringSliceVar(&k.topics, "topic", nil, "Kafka topic to read; repeat for several (selects the Kafka source)")
	f.StringVar(&k.clientID, "client-id", "batchpipe", "Kafka client id")
	f.Int32SliceVar(&k.partitions, "partitions", nil, "read only these partitions, e.g. 0,2 (not with --group)")
	f.StringVar(&k.from, "from", "oldest", "start at oldest, newest, an offset, an RFC 3339 time or a time before now (-24h, -90m): the first record at or after it; with --group only where nothing is committed")
	f.StringVar(&k.group, "group", "", "read as this consumer group; offsets are committed once records are delivered")
	f.BoolVar(&k.untilEnd, "until-end", false, "stop at the end offsets seen at start, once all below is delivered; with --group, once the group has committed them on every partition")
	f.StringVar(&k.until, "until", "", "stop each partition at its first record at or after this RFC 3339 time or time before now (-24h), as the broker's timestamp index finds it (else at its end offset at start); then as --until-end")
	f.StringVar(&k.isolation, "isolation", "read_committed", "read_committed: only records of committed transactions, as kcat (--until-end stops at the last stable offset); read_uncommitted: aborted and open ones too")
	f.Int64Var(&k.limit, "limit", 0, "stop after reading this many Kafka records (-n is the batch size)")
	f.StringVar(&k.envelope, "envelope", "", "json: each record is a JSON object with topic, partition, offset, timestamp, key, headers and value")
	f.DurationVar(&k.commitInterval, "commit-interval", time.Second, "with --group, commit delivered offsets this often (and at rebalance and exit)")
	f.DurationVar(&k.timeout, "kafka-timeout", 30*time.Second, "give up (exit 1; at start, exit 69 within seconds) when no broker has answered, or the group has assigned this member no partitions, for this long, or (--group --until-end) when other members have left partitions undrained for this long after this member's were; also the longest the final commit waits, and how long the kafka sink sends a batch again while no broker answers")
	f.DurationVar(&k.sessionTimeout, "kafka-session-timeout", 10*time.Second, "with --group, how long the group waits for a member that stopped answering; brokers refuse values below their group.min.session.timeout.ms, 6s by default (exit 2)")
	f.DurationVar(&k.rebalance, "kafka-rebalance-timeout", 60*time.Second, "with --group, how long a rebalance waits for members to rejoin; a member losing partitions waits up to 3/4 of it (leaving 2s, or half of a shorter one, to rejoin) for the batches in flight that hold their records, then commits them and lets go (a batch still running after that may be delivered twice)")
	f.StringVar(&k.instanceID, "group-instance-id", "", "with --group, a static member (Kafka 2.3+): restarted with the same id within --kafka-session-timeout, it gets its partitions back with no rebalance; unique per member and stable across its restarts (a host or pod name); a second member with the same id fences the first, which exits 2")
	f.StringVar(&k.strategy, "rebalance-strategy", "range", "with --group, how the group divides partitions: range, roundrobin, sticky, or cooperative-sticky (a rebalance stops only the partitions that move; every member of the group must use it, see docs/kafka.md)")
	f.BoolVar(&k.exactlyOnce, "exactly-once", false, "with --group: one partition per batch, each batch's offsets stored in the group before delivery, so every later attempt forms the same batches (see docs/exactly-once.md)")
	f.BoolVar(&k.tls, "kafka-tls", false, "connect to Kafka with TLS")
	f.StringVar(&k.caFile, "kafka-cacert", "", "PEM file of CA certificates for Kafka TLS (implies --kafka-tls)")
	f.StringVar(&k.certFile, "kafka-cert", "", "PEM client certificate for Kafka TLS, with --kafka-key")
	f.StringVar(&k.keyFile, "kafka-key", "", "PEM client key for Kafka TLS")
	f.StringVar(&k.sasl, "kafka-sasl", "", "SASL mechanism: plain, scram-sha-256 or scram-sha-512 (password from $"+envPassword+")")
	f.StringVar(&k.user, "kafka-user", "", "SASL user name")
}

// txnSink reports whether batches go to Kafka in transactions that
// commit the source's offsets: --exactly-once with the kafka sink.
func (o *options) txnSink() bool { return o.kafka.exactlyOnce && o.sink == "kafka" }

// enabled reports whether Kafka is the source.
func (k *kafkaOptions) enabled() bool { return len(k.topics) > 0 }

// checkKafka refuses Kafka flags that make no sense together or without
// Kafka.
func (o *options) checkKafka() error {
	k := &o.kafka
	changed := func(name string) bool {
		f := o.flags.Lookup(name)
		return f != nil && f.Changed
	}
	if !k.enabled() && k.exactlyOnce {
		return usagef("--exactly-once reads Kafka with --group: stdin cannot be read again, so a batch cannot be formed again")
	}
	if !k.enabled() {
		for _, name := range []string{"partitions", "from", "group", "until-end", "until", "isolation", "limit", "envelope", "commit-interval", "kafka-session-timeout", "kafka-rebalance-timeout"} {
			if changed(name) {
				return usagef("--%s reads Kafka: give --topic too", name)
			}
		}
		if o.sink != "kafka" && !strings.HasPrefix(o.deadLetter, "kafka:") {
			// Else records would be read from stdin, perhaps a terminal,
			// while the command line speaks of Kafka.
			for _, name := range []string{"kafka-brokers", "kafka-tls", "kafka-cacert", "kafka-cert", "kafka-key", "kafka-sasl", "kafka-user", "client-id"} {
				if givenOnCommandLine(o.flags.Lookup(name)) {
					return usagef("--%s is for Kafka, and nothing here reads or writes it: give --topic TOPIC to read it (or the kafka sink, or --dead-letter kafka:TOPIC)", name)
				}
			}
		}
		return nil
	}
	switch {
	case k.group != "" && len(k.partitions) > 0:
		return usagef("--partitions and --group: the group assigns partitions; give one")
	case !slices.Contains(kafka.Strategies, k.strategy):
		return usagef("--rebalance-strategy takes %s, not %q", strings.Join(kafka.Strategies, ", "), k.strategy)
	case k.exactlyOnce && k.group == "":
		return usagef("--exactly-once needs --group: the batches' offsets are stored with the group's")
	case k.limit < 0:
		return usagef("--limit must not be negative, not %d", k.limit)
	case k.isolation != "read_committed" && k.isolation != "read_uncommitted":
		return usagef("--isolation takes read_committed or read_uncommitted, not %q", k.isolation)
	case k.envelope != "" && k.envelope != "json":
		return usagef("--envelope takes json, not %q", k.envelope)
	case k.commitInterval <= 0:
		return usagef("--commit-interval must be positive, not %v", k.commitInterval)
	case k.rebalance <= 0:
		return usagef("--kafka-rebalance-timeout must be positive, not %v", k.rebalance)
	case k.timeout <= 0:
		return usagef("--kafka-timeout must be positive, not %v", k.timeout)
	case changed("max-record-bytes"):
		return usagef("--max-record-bytes is for stdin: Kafka records come whole")
	}
	for _, p := range k.partitions {
		if p < 0 {
			return usagef("--partitions: %d is not a partition", p)
		}
	}
	// Relative times count from one moment, so that --from -48h
	// --until -24h is a window of exactly a day.
	now := time.Now()
	from, err := kafka.ParseFrom(k.from, now)
	if err != nil {
		return usagef("--from: %v", err)
	}
	k.fromAt = from
	if k.until != "" {
		if k.untilAt, err = kafka.ParseTime(k.until, now); err != nil {
			return usagef("--until: %v", err)
		}
		if from.Kind == kafka.FromTime && from.Time.After(k.untilAt) {
			return usagef("--from %s is after --until %s", from.Time.Format(time.RFC3339), k.untilAt.Format(time.RFC3339))
		}
	}
	return nil
}

// kafkaConn returns the connection settings, or a usage error.
func (o *options) kafkaConn() (*kafka.Conn, error) {
	k := &o.kafka
	brokers := k.brokers
	if brokers == "" {
		brokers = os.Getenv(envBrokers)
	}
	var list []string
	for _, b := range strings.Split(brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			list = append(list, b)
		}
	}
	if len(list) == 0 {
		return nil, usagef("Kafka needs brokers: give --kafka-brokers or set %s", envBrokers)
	}
	c := &kafka.Conn{
		Brokers:  list,
		ClientID: k.clientID,
		TLS:      k.tls,
		CAFile:   k.caFile,
		CertFile: k.certFile,
		KeyFile:  k.keyFile,
		SASL:     k.sasl,
		User:     k.user,
		Password: os.Getenv(envPassword),
		// The flag is checked only with --topic; without, nothing is read.
		ReadUncommitted:  k.isolation == "read_uncommitted",
		DialTimeout:      min(k.timeout, 5*time.Second),
		SessionTimeout:   k.sessionTimeout,
		RebalanceTimeout: k.rebalance,
		Strategy:         k.strategy,
	}
	if k.group != "" {
		// Without a group, ignored: the variable may be set for a host
		// or pod whose other runs read no group.
		c.InstanceID = k.instanceID
	}
	if k.sasl != "" && c.Password == "" {
		return nil, usagef("--kafka-sasl: set the password in %s", envPassword)
	}
	if _, err := c.Config(); err != nil {
		if errors.Is(err, kafka.ErrInstanceID) {
			return nil, usagef("--group-instance-id %q: letters, digits, '.', '_' and '-' only, at most 249 of them", k.instanceID)
		}
		return nil, refused(err)
	}
	return c, nil
}

// session returns what to open of Kafka: the source when --topic is
// given, the dead letter when --dead-letter names a topic.
func (o *options) session(logger *slog.Logger) (kafka.SessionConfig, error) {
	conn, err := o.kafkaConn()
	if err != nil {
		return kafka.SessionConfig{}, err
	}
	k := &o.kafka
	sc := kafka.SessionConfig{Conn: conn, TxnSink: o.txnSink(), Timeout: k.timeout}
	if dl, ok := strings.CutPrefix(o.deadLetter, "kafka:"); ok {
		if dl == "" {
			return sc, usagef("--dead-letter kafka: give the topic after kafka:")
		}
		sc.DeadLetter = dl
	}
	if k.enabled() {
		sc.Source = &kafka.SourceConfig{
			Topics:         k.topics,
			Partitions:     k.partitions,
			From:           k.fromAt,
			Group:          k.group,
			UntilEnd:       k.untilEnd,
			Until:          k.untilAt,
			Limit:          k.limit,
			Envelope:       k.envelope == "json",
			CommitInterval: k.commitInterval,
			Timeout:        k.timeout,
			Logger:         logger,
			ExactlyOnce:    k.exactlyOnce,
		}
	}
	return sc, nil
}

// mismatchHint says which flags make the connection speak as the listener.
func mismatchHint(mm *kafka.MismatchError) string {
	switch mm.Mismatch {
	case kafka.ListenerTLS:
		return "give --kafka-tls (and --kafka-cacert FILE if its certificate is not from a CA the system trusts), or the port of a plaintext listener"
	case kafka.ListenerNoTLS:
		return "leave out --kafka-tls, --kafka-cacert and --kafka-cert, or give the port of its TLS listener"
	case kafka.ListenerSASL:
		return "give --kafka-sasl MECHANISM and --kafka-user, with the password in $" + envPassword + ", or the port of a listener without SASL"
	case kafka.ListenerNoSASL:
		return "leave out --kafka-sasl, or give the port of its SASL listener"
	case kafka.MechanismMissing:
		var ours []string
		for _, m := range mm.Mechanisms {
			if m = strings.ToLower(m); m == "plain" || strings.HasPrefix(m, "scram-sha-") {
				ours = append(ours, m)
			}
		}
		if len(ours) == 0 {
			return "batchpipe speaks plain, scram-sha-256 and scram-sha-512 only"
		}
		return "give --kafka-sasl " + strings.Join(ours, " or ")
	}
	return ""
}

// withKafkaHint adds to an error naming a TLS or SASL mismatch the flags
// that mend it.
func withKafkaHint(err error) error {
	var mm *kafka.MismatchError
	if errors.As(err, &mm) {
		return fmt.Errorf("%w: %s", err, mismatchHint(mm))
	}
	return err
}
