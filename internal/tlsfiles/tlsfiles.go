// Package tlsfiles builds a client *tls.Config from the PEM files a sink's configuration names, so
// that every sink reads and checks them the same way.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Files are the TLS settings of a client configuration.
type Files struct {
	CAFile             string // PEM bundle of the authorities to trust; "" means the system pool
	CertFile, KeyFile  string // PEM client certificate and key; both or neither
	ServerName         string // overrides the name checked in the server's certificate
	InsecureSkipVerify bool   // disables verification; an explicit opt-in
}

// Config reads the files into a client TLS configuration (TLS 1.2 or newer). Errors name the
// configuration keys under prefix, e.g. "kafka.tls.ca_file".
func Config(prefix string, f Files) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         f.ServerName,
		InsecureSkipVerify: f.InsecureSkipVerify, //nolint:gosec // explicit opt-in
	}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.ca_file: %w", prefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.ca_file %s holds no PEM certificate", prefix, f.CAFile)
		}
		tc.RootCAs = pool
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.cert_file/key_file: %w", prefix, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
