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

// Options are the tls keys of a sink entry, the same for every sink that connects over TLS.
type Options struct {
	// Enabled turns TLS on. Default false.
	Enabled bool `mapstructure:"enabled"`
	// CAFile is a PEM bundle of the authorities to trust. Default: the system pool.
	CAFile string `mapstructure:"ca_file"`
	// CertFile and KeyFile are the PEM client certificate and key; both or neither.
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
	// ServerName overrides the name checked in the server's certificate. Default: the host.
	ServerName string `mapstructure:"server_name"`
	// InsecureSkipVerify disables certificate verification. Default false; for tests only.
	InsecureSkipVerify bool `mapstructure:"insecure_skip_verify"`
}

// Validate reports options that cannot work, naming the keys under prefix (e.g. "kafka.tls").
// It reads no file.
func (o Options) Validate(prefix string) error {
	if (o.CertFile == "") != (o.KeyFile == "") {
		return fmt.Errorf("%[1]s.cert_file and %[1]s.key_file go together", prefix)
	}
	return nil
}

// Client reads the files into a client TLS configuration, or returns nil when TLS is not enabled.
// Errors name the keys under prefix.
func (o Options) Client(prefix string) (*tls.Config, error) {
	if !o.Enabled {
		return nil, nil
	}
	return Config(prefix, Files{CAFile: o.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile,
		ServerName: o.ServerName, InsecureSkipVerify: o.InsecureSkipVerify})
}
