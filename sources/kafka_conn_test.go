package sources

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// selfSigned returns a server certificate for 127.0.0.1 and the path of a
// PEM file holding it as a CA.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kfake"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, ca
}

// TLS and each SASL mechanism against a cluster that requires them; a wrong
// password is refused without being repeated.
func TestKafkaConnSecurity(t *testing.T) {
	cert, ca := selfSigned(t)
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		t.Run(mech, func(t *testing.T) {
			c := newCluster(t,
				kfake.SeedTopics(1, "t"),
				kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}),
				kfake.EnableSASL(),
				kfake.Superuser(strings.ToUpper(mech), "alice", "right-password"),
			)
			conn := KafkaConn{Brokers: c.ListenAddrs(), CAFile: ca, SASL: mech, User: "alice", Password: "right-password"}
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

func TestKafkaConnConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		conn KafkaConn
		want string
	}{
		{KafkaConn{}, "no brokers"},
		{KafkaConn{Brokers: []string{"b:9092"}, SASL: "gssapi", User: "u"}, "unknown SASL mechanism"},
		{KafkaConn{Brokers: []string{"b:9092"}, SASL: "plain"}, "needs a user name"},
		{KafkaConn{Brokers: []string{"b:9092"}, User: "u"}, "without a SASL mechanism"},
		{KafkaConn{Brokers: []string{"b:9092"}, CertFile: "c.pem"}, "both the certificate and the key"},
		{KafkaConn{Brokers: []string{"b:9092"}, CAFile: "/nonexistent/ca.pem"}, "CA file"},
	} {
		if _, err := tc.conn.Config(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.conn, err, tc.want)
		}
	}
}
