// Package testcert makes a throwaway certificate authority for tests of
// TLS and mutual TLS: a CA, a server certificate for 127.0.0.1 and
// localhost, and a client certificate, all written as PEM files.
package testcert

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
	"testing"
	"time"
)

// A Set is a CA and the certificates it signed.
type Set struct {
	CAFile                string // CA certificate, PEM
	ClientCert, ClientKey string // client certificate and key, PEM
	ServerCert, ServerKey string // server certificate and key, PEM
	Pool                  *x509.CertPool
	Server                tls.Certificate // for 127.0.0.1 and localhost
	Client                tls.Certificate
}

// New makes a Set, with its files in a temporary directory of t.
func New(t testing.TB) *Set {
	t.Helper()
	s, err := Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Write makes a Set with its files in dir, for servers outside a test
// (a real Kafka broker) as well as in one.
func Write(dir string) (*Set, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "batchpipe test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	s := &Set{Pool: x509.NewCertPool()}
	s.Pool.AddCert(ca)
	s.CAFile = filepath.Join(dir, "ca.pem")
	if err := writePEM(s.CAFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}

	issue := func(serial int64, usage x509.ExtKeyUsage, server bool, certFile, keyFile string) (tls.Certificate, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return tls.Certificate{}, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: "batchpipe test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if server {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			return tls.Certificate{}, err
		}
		kDER, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return tls.Certificate{}, err
		}
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			return tls.Certificate{}, err
		}
		if err := writePEM(keyFile, "PRIVATE KEY", kDER); err != nil {
			return tls.Certificate{}, err
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, nil
	}
	s.ServerCert = filepath.Join(dir, "server.pem")
	s.ServerKey = filepath.Join(dir, "server-key.pem")
	if s.Server, err = issue(2, x509.ExtKeyUsageServerAuth, true, s.ServerCert, s.ServerKey); err != nil {
		return nil, err
	}
	s.ClientCert = filepath.Join(dir, "client.pem")
	s.ClientKey = filepath.Join(dir, "client-key.pem")
	if s.Client, err = issue(3, x509.ExtKeyUsageClientAuth, false, s.ClientCert, s.ClientKey); err != nil {
		return nil, err
	}
	return s, nil
}

// ServerConfig is a TLS config for a test server; with mutual it requires a
// client certificate signed by the CA.
func (s *Set) ServerConfig(mutual bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{s.Server}}
	if mutual {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = s.Pool
	}
	return c
}

func writePEM(name, typ string, der []byte) error {
	return os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
