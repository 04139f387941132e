package kafka

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/internal/testcert"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TLS and each SASL mechanism against a cluster that requires them; a wrong
// password is refused without being repeated.
func TestConnSecurity(t *testing.T) {
	certs := testcert.New(t)
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		t.Run(mech, func(t *testing.T) {
			c := kafkatest.NewFake(t,
				kfake.SeedTopics(1, "t"),
				kfake.TLS(&tls.Config{Certificates: []tls.Certificate{certs.Server}}),
				kfake.EnableSASL(),
				kfake.Superuser(strings.ToUpper(mech), "alice", "right-password"),
			)
			conn := Conn{Brokers: c.ListenAddrs(), CAFile: certs.CAFile, SASL: mech, User: "alice", Password: "right-password"}
			client, err := conn.Connect("t")
			if err != nil {
				t.Fatal(err)
			}
			parts, err := client.Partitions("t")
			client.Close()
			if err != nil || len(parts) != 1 {
				t.Fatalf("partitions %v, %v", parts, err)
			}

			conn.Password = "wrong-password"
			if client, err := conn.Connect("t"); err == nil {
				client.Close()
				t.Fatal("a wrong password was accepted")
			} else if strings.Contains(err.Error(), "wrong-password") {
				t.Fatalf("the error repeats the password: %v", err)
			} else {
				t.Logf("wrong password: %v", err)
			}

			conn.Password, conn.CAFile = "right-password", ""
			if client, err := conn.Connect("t"); err == nil {
				client.Close()
				t.Fatal("a certificate from an unknown CA was accepted")
			}
		})
	}
}

// Mutual TLS: the broker wants a client certificate signed by its CA.
func TestConnClientCertificate(t *testing.T) {
	certs := testcert.New(t)
	c := kafkatest.NewFake(t,
		kfake.SeedTopics(1, "t"),
		kfake.TLS(&tls.Config{
			Certificates: []tls.Certificate{certs.Server},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    certs.Pool,
		}),
	)
	conn := Conn{Brokers: c.ListenAddrs(), CAFile: certs.CAFile, CertFile: certs.ClientCert, KeyFile: certs.ClientKey}
	client, err := conn.Connect("t")
	if err != nil {
		t.Fatal(err)
	}
	client.Close()
	conn.CertFile, conn.KeyFile = "", ""
	if client, err := conn.Connect("t"); err == nil {
		client.Close()
		t.Fatal("connected without a client certificate")
	}
}

func TestConnConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		conn Conn
		want string
	}{
		{Conn{}, "no brokers"},
		{Conn{Brokers: []string{"b:9092"}, SASL: "gssapi", User: "u"}, "unknown SASL mechanism"},
		{Conn{Brokers: []string{"b:9092"}, SASL: "plain"}, "needs a user name"},
		{Conn{Brokers: []string{"b:9092"}, User: "u"}, "without a SASL mechanism"},
		{Conn{Brokers: []string{"b:9092"}, CertFile: "c.pem"}, "both the certificate and the key"},
		{Conn{Brokers: []string{"b:9092"}, CAFile: "/nonexistent/ca.pem"}, "CA file"},
	} {
		if _, err := tc.conn.Config(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.conn, err, tc.want)
		}
	}
}

// An instance id Kafka would refuse is refused at Config, by type; one it
// takes is set.
func TestConnInstanceID(t *testing.T) {
	for _, id := range []string{"a/b", ".", "..", "a b", "é", strings.Repeat("x", 250)} {
		_, err := (&Conn{Brokers: []string{"b:9092"}, InstanceID: id}).Config()
		var kerr *Error
		if !errors.Is(err, ErrInstanceID) || !errors.As(err, &kerr) || kerr.Kind != Refused {
			t.Errorf("%q: error %v, want ErrInstanceID, refused", id, err)
		}
	}
	for _, id := range []string{"", "loader-1", "a.b_c", strings.Repeat("x", 249)} {
		cfg, err := (&Conn{Brokers: []string{"b:9092"}, InstanceID: id}).Config()
		if err != nil || cfg.Consumer.Group.InstanceId != id {
			t.Errorf("%q: %v", id, err)
		}
	}
}

// A broker that takes connections but never answers is reported within
// the dial timeout, not sarama's 30-second read timeout.
func TestConnSilentBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	defer func() {
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	}()
	conn := Conn{Brokers: []string{ln.Addr().String()}, DialTimeout: 200 * time.Millisecond}
	start := time.Now()
	client, err := conn.Connect("t")
	if err == nil {
		client.Close()
		t.Fatal("connected to a broker that never answers")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v to give up", took)
	}
	if !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("error %v does not name the broker", err)
	}
}

// A join waits at the coordinator up to the rebalance timeout: the read
// timeout must outlast it, or joins after members die fail and start
// again, over and over.
func TestConnReadTimeoutOutlastsJoins(t *testing.T) {
	for _, rt := range []time.Duration{0, time.Second, 5 * time.Minute} {
		c := Conn{Brokers: []string{"b:9092"}, RebalanceTimeout: rt}
		cfg, err := c.Config()
		if err != nil {
			t.Fatal(err)
		}
		if g := cfg.Consumer.Group.Rebalance.Timeout; cfg.Net.ReadTimeout < g+5*time.Second {
			t.Errorf("rebalance timeout %v: read timeout %v, want at least 5s more", g, cfg.Net.ReadTimeout)
		}
	}
}

// A member learns of a rebalance at its next heartbeat: at most a second
// away, and a third of a short session, which it must outlast.
func TestConnHeartbeat(t *testing.T) {
	for _, c := range []struct{ session, want time.Duration }{
		{0, time.Second}, // sarama's 10s
		{6 * time.Second, time.Second},
		{45 * time.Second, time.Second},
		{1500 * time.Millisecond, 500 * time.Millisecond},
		{100 * time.Millisecond, 33333333 * time.Nanosecond},
	} {
		cfg, err := (&Conn{Brokers: []string{"b:9092"}, SessionTimeout: c.session}).Config()
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Consumer.Group.Heartbeat.Interval; got != c.want {
			t.Errorf("session timeout %v: heartbeat every %v, want %v", c.session, got, c.want)
		}
	}
}

// The user's options apply on top of acks=all.
func TestProducerConfig(t *testing.T) {
	conn := Conn{Brokers: []string{"b:9092"}}
	cfg, err := conn.ProducerConfig(ProducerOptions{Compression: sarama.CompressionZSTD})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Producer.RequiredAcks != sarama.WaitForAll || cfg.Producer.Compression != sarama.CompressionZSTD ||
		cfg.Producer.MaxMessageBytes != DefaultMaxMessageBytes {
		t.Fatalf("producer settings %+v", cfg.Producer)
	}
}

// A missing topic is named; it is not created.
func TestPartitionsMissingTopic(t *testing.T) {
	c := kafkatest.NewFake(t, kfake.SeedTopics(3, "t"))
	client, err := (&Conn{Brokers: c.ListenAddrs()}).Connect("t", "nope")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if n, err := Partitions(client, "t"); n != 3 || err != nil {
		t.Fatalf("t: %d partitions, %v", n, err)
	}
	if _, err := Partitions(client, "nope"); err == nil || err.Error() != `topic "nope" does not exist` {
		t.Fatalf("nope: %v", err)
	}
	if _, err := Partitions(client, "nope"); err == nil {
		t.Fatal("the topic was created")
	}
}
