package tlsfiles

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/batchpipe/batchpipe/internal/testcert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMutualTLS connects with the settings Config makes to a server that
// wants a client certificate from its CA.
func TestMutualTLS(t *testing.T) {
	certs := testcert.New(t)
	c, err := Config(certs.CAFile, certs.ClientCert, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", certs.ServerConfig(true))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- err.Error()
			return
		}
		peer <- tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}()
	c.ServerName = "localhost"
	conn, err := tls.Dial("tcp", ln.Addr().String(), c)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// The client certificate is the CA's third, after its own and the server's.
	if serial := <-peer; serial != "3" {
		t.Fatalf("server saw %q, not the client certificate", serial)
	}
}

func TestErrors(t *testing.T) {
	certs := testcert.New(t)
	for _, tc := range []struct {
		ca, cert, key, want string
	}{
		{"", certs.ClientCert, "", "needs both"},
		{"", "", certs.ClientKey, "needs both"},
		{"/nonexistent/ca.pem", "", "", "CA file"},
		{certs.ClientKey, "", "", "no PEM certificate"},
		{"", certs.ClientCert, certs.CAFile, "client certificate"},
	} {
		if _, err := Config(tc.ca, tc.cert, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Config(%q, %q, %q): %v, want %q", tc.ca, tc.cert, tc.key, err, tc.want)
		}
	}
}
