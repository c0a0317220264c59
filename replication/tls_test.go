package replication

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pgtest"
)

// newCA returns a self-signed CA certificate and its key.
func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// writeServerFiles writes ca.pem, server.crt and server.key (mode 0600) into dir, owned by the
// server's user when the test runs as root.
func writeServerFiles(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	ca, caKey, caPEM := newCA(t, "pgstream test CA")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{caFile, caPEM, 0o644},
		{certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644},
		{keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600},
	} {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{dir, caFile, certFile, keyFile} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	return caFile, certFile, keyFile
}

func TestTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	dir, err := os.MkdirTemp("", "pgstream-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile := writeServerFiles(t, dir)
	pg := pgtest.New(t, pgtest.Options{Settings: map[string]string{
		"ssl": "on", "ssl_cert_file": "'" + certFile + "'", "ssl_key_file": "'" + keyFile + "'",
	}})
	// Only the superuser may connect without TLS; every other role needs hostssl.
	hba := "local all all trust\nhost all postgres 127.0.0.1/32 scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(pg.DataDir(), "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	pg.MustExec(t, "postgres", `SELECT pg_reload_conf(); CREATE ROLE tlsuser LOGIN REPLICATION PASSWORD 'tls-pw'`)
	base := fmt.Sprintf("postgres://tlsuser:tls-pw@127.0.0.1:%d/postgres", pg.Port)

	t.Run("verify-full", func(t *testing.T) {
		cfg := Config{URL: base + "?sslmode=verify-full&sslrootcert=" + caFile}
		c := connect(t, cfg)
		got, err := c.queryValue(ctxT(t, 5*time.Second), "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
		if err != nil || got != "true" {
			t.Fatalf("pg_stat_ssl.ssl = %q, %v", got, err)
		}
		if _, err := c.IdentifySystem(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		sql, err := NewSQLConn(ctxT(t, 10*time.Second), cfg)
		if err != nil {
			t.Fatalf("NewSQLConn over TLS: %v", err)
		}
		sql.Close(context.Background())
	})
	t.Run("tiny deadlines", func(t *testing.T) {
		// A read timeout inside a TLS record must not break the TLS connection either.
		pg.MustExec(t, "postgres", "CREATE PUBLICATION pub_all FOR ALL TABLES")
		cfg := Config{URL: base + "?sslmode=verify-full&sslrootcert=" + caFile, Slot: "s_tls_tiny", Publication: "pub_all"}
		streamTinyDeadlines(t, pg, cfg, 500)
	})
	t.Run("wrong CA", func(t *testing.T) {
		_, _, otherPEM := newCA(t, "some other CA")
		other := filepath.Join(t.TempDir(), "other.pem")
		if err := os.WriteFile(other, otherPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Connect(ctxT(t, 10*time.Second), Config{URL: base + "?sslmode=verify-full&sslrootcert=" + other})
		wantKind(t, err, ErrTLS, "sslrootcert", "CA that signed the server certificate")
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) || IsRetryable(err) {
			t.Fatalf("error %v: want x509.UnknownAuthorityError, not retryable", err)
		}
	})
	t.Run("no pg_hba entry", func(t *testing.T) {
		_, err := Connect(ctxT(t, 10*time.Second), Config{URL: base + "?sslmode=disable"})
		wantKind(t, err, ErrNoHBAEntry, "pg_hba.conf", "sslmode=require")
		if IsRetryable(err) {
			t.Fatal("retryable")
		}
	})
}
