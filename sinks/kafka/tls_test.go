package kafka

import (
	"context"
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

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pgstream/pgstream/internal/kafkatest"
	"github.com/pgstream/pgstream/sinks"
)

// selfSigned returns a server TLS config for 127.0.0.1 and the path of its certificate in PEM.
func selfSigned(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pgstream test broker"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS12,
	}
	return cfg, path
}

func TestTLS(t *testing.T) {
	serverTLS, caFile := selfSigned(t)
	_, brokers := kafkatest.StartCluster(t, kfake.TLS(serverTLS), kfake.SeedTopics(2, "pgstream.public.secure"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	s := newSink(t, Config{Brokers: brokers, TLS: TLSConfig{Enabled: true, CAFile: caFile}})
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	batches := rowEvents("public", "secure", 1, 10, 0x100000)
	if err := s.Write(ctx, &batches[0]); err != nil {
		t.Fatalf("Write: %v", err)
	}

	// Without the CA the broker's certificate is not trusted.
	untrusted := newSink(t, Config{Brokers: brokers, TLS: TLSConfig{Enabled: true}})
	if err := untrusted.Ping(ctx); err == nil {
		t.Fatal("Ping trusted an unknown certificate authority")
	}
	if _, err := New(Config{Brokers: brokers, TLS: TLSConfig{Enabled: true, CAFile: filepath.Join(t.TempDir(), "none.pem")}}, sinks.Env{}); err == nil {
		t.Fatal("New accepted a missing CA file")
	}
}
