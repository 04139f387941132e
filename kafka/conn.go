// The one place that builds Kafka clients: the connection settings
// (brokers, TLS, SASL), the client configuration the source and the
// producers rely on, and the checks made at start.

package kafka

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/internal/tlsfiles"
	"github.com/rcrowley/go-metrics"
	"github.com/xdg-go/scram"
)

// Conn says how to reach a Kafka cluster: brokers, client id, TLS and
// SASL. The Kafka source and the Kafka dead letter share one connection.
type Conn struct {
	Brokers  []string // host:port
	ClientID string   // default "batchpipe"

	TLS      bool   // implied by CAFile and CertFile
	CAFile   string // PEM roots; default: the system's
	CertFile string // PEM client certificate, with KeyFile
	KeyFile  string

	SASL     string // "", "plain", "scram-sha-256" or "scram-sha-512"
	User     string
	Password string

	// DialTimeout bounds each connection attempt, and Connect's wait for
	// an answer, so that brokers that do not answer are reported within
	// seconds. Default 5s.
	DialTimeout time.Duration
	// ReadUncommitted makes the source read records of transactions not
	// yet committed, and of aborted ones. By default only committed
	// records are read, as kcat and Kafka's own consumer do: an aborted
	// record never happened.
	ReadUncommitted bool
	// RebalanceTimeout is how long the group waits for its members to
	// rejoin in a rebalance, and so how long a member may wait, when its
	// partitions are taken, for the batches in flight that hold their
	// records. Default 60s.
	RebalanceTimeout time.Duration
	// SessionTimeout is the consumer group session timeout: how long the
	// group waits for a member that stopped answering before handing its
	// partitions to the others. Default 10s.
	SessionTimeout time.Duration
	// InstanceID makes the member static (KIP-345): one that comes back
	// under it within SessionTimeout gets its partitions back with no
	// rebalance, and one that leaves does not leave the group. "": dynamic.
	InstanceID string
	// Strategy is how the group divides partitions: "range" (default),
	// "roundrobin", "sticky" or "cooperative-sticky" (KIP-429: a rebalance
	// stops only the partitions that move).
	Strategy string
}

// Strategies are the names Strategy takes.
var Strategies = []string{"range", "roundrobin", "sticky", "cooperative-sticky"}

// Version is the protocol version spoken: Kafka 2.4 (2019) and later
// brokers understand it. It has what offset commits with generations and
// record headers need, static members (2.3) and cooperative rebalancing
// (2.4). The Kafka source builds some requests itself, at the versions
// sarama uses for it: change them with it.
var Version = sarama.V2_4_0_0

// nilMetrics turns off go-metrics, whose metrics sarama keeps and
// batchpipe reads none of: they cost time per request and start a
// goroutine that never ends. A switch for the whole process, read as
// sarama makes each metric: Config sets it, as every client is made with
// its configuration.
var nilMetrics = sync.OnceFunc(func() { metrics.UseNilMetrics = true })

// Config returns the client configuration: the connection settings, and the
// consumer and producer settings batchpipe relies on.
func (c *Conn) Config() (*sarama.Config, error) {
	nilMetrics()
	if len(c.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers given")
	}
	cfg := sarama.NewConfig()
	cfg.Version = Version
	cfg.ClientID = c.ClientID
	if cfg.ClientID == "" {
		cfg.ClientID = "batchpipe"
	}

	cfg.Net.DialTimeout = c.DialTimeout
	if cfg.Net.DialTimeout <= 0 {
		cfg.Net.DialTimeout = 5 * time.Second
	}
	// Fail fast at start: a wrong address is a usage error, not a wait.
	cfg.Metadata.Retry.Max = 2
	cfg.Metadata.Retry.Backoff = 250 * time.Millisecond
	// A typo in --topic must not create a topic.
	cfg.Metadata.AllowAutoTopicCreation = false
	cfg.Metadata.Full = false

	// Offsets are committed by the source, only once records are delivered.
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	if c.ReadUncommitted {
		cfg.Consumer.IsolationLevel = sarama.ReadUncommitted
	}
	// A committed offset whose records were deleted is an error to report,
	// not one to mend by skipping them.
	cfg.Consumer.Group.ResetInvalidOffsets = false
	// The longest a fetch waits for records: also how long stopping waits
	// for the fetch in flight.
	cfg.Consumer.MaxWaitTime = 250 * time.Millisecond
	// Bigger fetches and buffers: fewer round trips and channel hand-offs
	// per record. Memory stays bounded: per partition, one fetch and
	// ChannelBufferSize messages.
	cfg.Consumer.Fetch.Default = 1 << 20
	cfg.ChannelBufferSize = 1024
	if err := c.groupConfig(cfg); err != nil {
		return nil, err
	}

	// The dead letter: durable once every in-sync replica has it.
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll

	if c.TLS || c.CAFile != "" || c.CertFile != "" {
		tc, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		cfg.Net.TLS.Enable = true
		cfg.Net.TLS.Config = tc
	}
	if err := c.sasl(cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return cfg, nil
}

// groupConfig sets the consumer group's settings: session, strategy,
// rebalance timeout, and the read timeout a join needs.
func (c *Conn) groupConfig(cfg *sarama.Config) error {
	if c.SessionTimeout > 0 {
		cfg.Consumer.Group.Session.Timeout = c.SessionTimeout
	}
	// A rebalance waits for every member to rejoin, and a member learns of
	// it at its next heartbeat: one a second, not a third of the session
	// (3.3s by default), bounds what every partition that moves waits.
	cfg.Consumer.Group.Heartbeat.Interval = max(min(cfg.Consumer.Group.Session.Timeout/3, time.Second), 10*time.Millisecond)
	cfg.Consumer.Group.Rebalance.Retry.Backoff = 250 * time.Millisecond
	if c.InstanceID != "" {
		if err := checkInstanceID(c.InstanceID); err != nil {
			return err
		}
	}
	cfg.Consumer.Group.InstanceId = c.InstanceID
	switch c.Strategy {
	case "", "range":
		cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	case "roundrobin":
		cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin()}
	case "sticky":
		cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	case "cooperative-sticky":
		cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
	default:
		return fmt.Errorf("kafka: unknown rebalance strategy %q (%s)", c.Strategy, strings.Join(Strategies, ", "))
	}
	if c.RebalanceTimeout > 0 {
		cfg.Consumer.Group.Rebalance.Timeout = c.RebalanceTimeout
	}
	// A join waits at the coordinator until every member has rejoined, up
	// to the rebalance timeout: a shorter read timeout (sarama's default,
	// 30s, against its 60s) fails joins after members die, again and
	// again (IBM/sarama#2820). As Kafka's own consumer, allow 5s more.
	// Other requests need no more than before: the watch does not wait on
	// them to tell that brokers stopped answering.
	cfg.Net.ReadTimeout = max(cfg.Net.ReadTimeout, cfg.Consumer.Group.Rebalance.Timeout+5*time.Second)
	return nil
}

// checkInstanceID says whether Kafka takes id as a group instance id, by
// sarama's rules, which are Kafka's: it validates a configuration that
// holds nothing else to refuse.
func checkInstanceID(id string) error {
	cfg := sarama.NewConfig()
	cfg.Version = Version
	cfg.Consumer.Group.InstanceId = id
	if err := cfg.Validate(); err != nil {
		return refused(fmt.Errorf("kafka: %w %q: %w", ErrInstanceID, id, err))
	}
	return nil
}

func (c *Conn) tlsConfig() (*tls.Config, error) {
	tc, err := tlsfiles.Config(c.CAFile, c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return tc, nil
}

func (c *Conn) sasl(cfg *sarama.Config) error {
	if c.SASL == "" {
		if c.User != "" {
			return errors.New("kafka: a user name without a SASL mechanism")
		}
		return nil
	}
	if c.User == "" {
		return fmt.Errorf("kafka: SASL %s needs a user name", c.SASL)
	}
	cfg.Net.SASL.Enable = true
	cfg.Net.SASL.Handshake = true
	cfg.Net.SASL.Version = sarama.SASLHandshakeV1
	cfg.Net.SASL.User = c.User
	cfg.Net.SASL.Password = c.Password
	switch strings.ToLower(c.SASL) {
	case "plain":
		cfg.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case "scram-sha-256":
		cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.HashGeneratorFcn(sha256.New)} }
	case "scram-sha-512":
		cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.HashGeneratorFcn(sha512.New)} }
	default:
		return fmt.Errorf("kafka: unknown SASL mechanism %q (plain, scram-sha-256, scram-sha-512)", c.SASL)
	}
	return nil
}

// Connect connects to the cluster and loads the metadata of topics, so
// that brokers that cannot be reached (or refuse the credentials) are
// reported now. Its error names the brokers; it never holds credentials.
func (c *Conn) Connect(topics ...string) (sarama.Client, error) {
	return c.connect(c.Config, topics)
}

// connect opens a client made with config, after a probe.
func (c *Conn) connect(config func() (*sarama.Config, error), topics []string) (sarama.Client, error) {
	// First a probe that waits for answers no longer than it waits to
	// connect: a broker that accepts connections but never answers would
	// otherwise hold the start for sarama's read timeout (30s), which the
	// client itself needs for long requests.
	probe, err := config()
	if err != nil {
		return nil, err
	}
	probe.Net.ReadTimeout = probe.Net.DialTimeout
	probe.Metadata.Retry.Max = 0
	client, err := c.open(probe, topics)
	if err == nil {
		client.Close()
		cfg, _ := config() // as above: no error
		client, err = c.open(cfg, topics)
	}
	if err != nil {
		if mm := c.mismatch(err); mm != nil {
			return nil, mm
		}
		hint := ""
		if c.SASL != "" && errors.Is(err, io.EOF) {
			// Some brokers hang up on bad credentials without a word.
			hint = " (the broker closed the connection: are the SASL user and password right?)"
		}
		return nil, fmt.Errorf("kafka: connect to %s: %w%s", strings.Join(c.Brokers, ","), err, hint)
	}
	return client, nil
}

// open creates a client and loads the metadata of topics.
func (c *Conn) open(cfg *sarama.Config, topics []string) (sarama.Client, error) {
	client, err := sarama.NewClient(c.Brokers, cfg)
	if err != nil {
		return nil, err
	}
	err = client.RefreshMetadata(topics...)
	// A missing topic is for the caller to report, by name.
	if err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		client.Close()
		return nil, err
	}
	return client, nil
}

// scramClient adapts xdg-go/scram, a maintained SCRAM implementation
// (RFC 5802, with SASLprep), to sarama.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (s *scramClient) Begin(user, password, authzID string) error {
	c, err := s.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	s.conv = c.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conv.Step(challenge) }
func (s *scramClient) Done() bool                            { return s.conv.Done() }
