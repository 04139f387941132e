package kafkareal

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
)

// TLSConfig trusts the CA in caFile.
func TLSConfig(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("kafka-real: no certificate in " + caFile)
	}
	return &tls.Config{RootCAs: pool}, nil
}
