package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pgstream/pgstream/internal/kafkatest"
	"github.com/pgstream/pgstream/internal/natstest"
	"github.com/pgstream/pgstream/internal/pgtest"
)

// secretConfig writes a configuration streaming db (through url, when not empty) to the given
// sink entries, logging at debug level as JSON.
func secretConfig(t *testing.T, dir, db, url, sinks string) string {
	t.Helper()
	if url == "" {
		url = cluster.URL(db)
	}
	return binaryConfig{url: url, slot: "s_" + db, publication: "pgs_" + db, noFile: true, sinks: sinks, level: "debug", jsonFormat: true}.write(t, dir)
}

// noSecret fails the test for every line of out holding one of the secrets.
func noSecret(t *testing.T, what, out string, secrets ...string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("%s: the secret %q is printed: %s", what, s, line)
			}
		}
	}
}

// deadAddr returns a local address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// streamExists reports whether the JetStream stream exists on the server at url.
func streamExists(t *testing.T, url, stream string) bool {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("look stream %s up: %v", stream, err)
	}
	return true
}

// NATS credentials inside a server URL, for a user and password and for a token, appear in no
// line that run or check prints: with nothing listening at the address, and with a real server
// (which does not require them, and so accepts the connection).
func TestNATSCredentialsInURLAreNeverPrinted(t *testing.T) {
	const password, token = "Nats-Pa55w0rd", "NatsT0kenS3cret"
	db := newDB(t)
	local := natstest.URL(t)
	for _, tc := range []struct{ name, host string }{
		{"nothing listening", deadAddr(t)},
		{"server", strings.TrimPrefix(local, "nats://")},
	} {
		// Subtest names stay free of the secrets: they appear in the temporary directories' paths.
		for name, server := range map[string]string{"password": "nats://pgs:" + password + "@" + tc.host, "token": "nats://" + token + "@" + tc.host} {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				stream, _ := natstest.Names("secret")
				cfg := secretConfig(t, t.TempDir(), db, "", fmt.Sprintf(`  - type: nats
    name: broker
    servers: [%q]
    stream: {name: %s}
`, server, stream))
				for _, cmd := range []string{"check", "run"} {
					out, code := runBinary(t, 90*time.Second, cmd, "--config", cfg)
					t.Logf("%s (exit %d):\n%s", cmd, code, out)
					if code == 0 {
						t.Fatalf("%s: exit 0 without the stream", cmd)
					}
					if !strings.Contains(out, "sink broker (nats)") {
						t.Errorf("%s: the output does not name the sink", cmd)
					}
					noSecret(t, cmd, out, password, token)
				}
			})
		}
	}
}

// uniqueStream returns a stream name and subject prefix of the test's own.

// lockedBuffer is the output of a running process, readable while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitOutput waits until the process's output holds want.
func waitOutput(t *testing.T, out *lockedBuffer, done <-chan error, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(out.String(), want) {
		select {
		case err := <-done:
			t.Fatalf("pgstream exited (%v) before printing %q:\n%s", err, want, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgstream did not print %q within %s:\n%s", want, timeout, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The lines run logs when the NATS server goes away and comes back name the server without its
// credentials.
func TestNATSReconnectLinesHideCredentials(t *testing.T) {
	const password, token = "Nats-Pa55w0rd", "NatsT0kenS3cret"
	for name, userinfo := range map[string]string{"password": "pgs:" + password, "token": token} {
		t.Run(name, func(t *testing.T) {
			srv := natstest.StartEmbedded(t)
			db := newDB(t)
			exec1(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
			stream, prefix := natstest.Names("secret")
			server := "nats://" + userinfo + "@" + strings.TrimPrefix(srv.ClientURL(), "nats://")
			cfg := secretConfig(t, t.TempDir(), db, "", fmt.Sprintf(`  - type: nats
    name: broker
    servers: [%q]
    subject_prefix: %s
    stream: {name: %s, create: true}
`, server, prefix, stream))
			cmd := exec.Command(binary(t), "run", "--config", cfg)
			var out lockedBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			waitOutput(t, &out, done, "pgstream starting", 60*time.Second)
			srv = natstest.Restart(t, srv)
			waitOutput(t, &out, done, "nats reconnected", 60*time.Second)
			// A change published after the reconnect.
			exec1(t, db, `INSERT INTO t VALUES (1)`)
			deadline := time.Now().Add(60 * time.Second)
			for streamCount(t, srv.ClientURL(), stream) < 1 {
				if time.Now().After(deadline) {
					t.Fatalf("the change did not reach the stream:\n%s", out.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Fatalf("pgstream did not stop within 60s:\n%s", out.String())
			}
			t.Logf("output:\n%s", out.String())
			noSecret(t, "run", out.String(), password, token)
		})
	}
}

// A PostgreSQL password holding an unencoded '@' is refused with the fix, and no part of it is
// printed (pgconn would take the part after the '@' for the host name).
func TestPostgresPasswordWithUnencodedAt(t *testing.T) {
	db := newDB(t)
	dir := t.TempDir()
	url := cluster.URLAs(pgtest.User, "Alpha7@Bravo9", db)
	cfg := secretConfig(t, dir, db, url, "  - type: file\n    path: "+filepath.Join(dir, "changes.jsonl")+"\n")
	for _, cmd := range []string{"check", "run"} {
		out, code := runBinary(t, 90*time.Second, cmd, "--config", cfg)
		t.Logf("%s (exit %d):\n%s", cmd, code, out)
		if code == 0 {
			t.Fatalf("%s: exit 0", cmd)
		}
		if !strings.Contains(out, "percent-encode @ in the password as %40") {
			t.Errorf("%s: the output does not say to percent-encode the '@'", cmd)
		}
		noSecret(t, cmd, out, "Alpha7", "Bravo9")
	}
}

// A wrong Kafka SASL password gives an error naming kafka.sasl that does not quote it, in run and
// check, at debug level.
func TestKafkaSASLPasswordIsNeverPrinted(t *testing.T) {
	const secret = "Kafka-Wr0ng-Pa55"
	_, brokers := kafkatest.StartCluster(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", "pgs", "right-password"),
		kfake.Superuser("SCRAM-SHA-256", "pgs", "right-password"))
	db := newDB(t)
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256"} {
		cfg := secretConfig(t, t.TempDir(), db, "", fmt.Sprintf(`  - type: kafka
    name: broker
    brokers: [%s]
    sasl: {mechanism: %s, username: pgs, password: %s}
`, brokers[0], mech, secret))
		for _, cmd := range []string{"check", "run"} {
			out, code := runBinary(t, 90*time.Second, cmd, "--config", cfg)
			t.Logf("%s %s (exit %d):\n%s", mech, cmd, code, out)
			if code == 0 {
				t.Fatalf("%s %s: exit 0 with a wrong password", mech, cmd)
			}
			if !strings.Contains(out, "sink broker (kafka)") || !strings.Contains(out, "kafka.sasl") {
				t.Errorf("%s %s: the error does not name the sink and kafka.sasl", mech, cmd)
			}
			noSecret(t, mech+" "+cmd, out, secret)
		}
	}
}

// check creates nothing: not the file sink's file or directory, not the JetStream stream that
// stream.create would create, not the Kafka topic that auto_create would create, not the slot or
// the publication.
// It says what run would create instead.
func TestCheckCreatesNothing(t *testing.T) {
	db := newDB(t)
	dir := t.TempDir()
	natsURL := natstest.URL(t)
	stream, prefix := natstest.Names("secret")
	t.Cleanup(func() { deleteStream(natsURL, stream) })
	brokers := kafkatest.Start(t)
	const topic = "pgstream.fixed"
	out := filepath.Join(dir, "new", "sub", "changes.jsonl")
	cfg := secretConfig(t, dir, db, "", fmt.Sprintf(`  - type: file
    name: out
    path: %s
  - type: nats
    name: broker
    servers: [%s]
    subject_prefix: %s
    stream: {name: %s, create: true}
  - type: kafka
    name: queue
    brokers: [%s]
    topic: %s
    auto_create: {enabled: true}
`, out, natsURL, prefix, stream, brokers[0], topic))
	text, code := runBinary(t, 90*time.Second, "check", "--config", cfg)
	t.Logf("check (exit %d):\n%s", code, text)
	if code != 0 || strings.Contains(text, "FAIL") {
		t.Errorf("check failed (exit %d)", code)
	}
	for _, want := range []string{
		"ok    sink out (file): " + out + " missing; run would create it and directory " + filepath.Dir(out),
		"ok    sink broker (nats): stream " + stream + " missing; run would create it (stream.create: true)",
		"ok    sink queue (kafka): topic " + topic + " missing; run would create it (auto_create.enabled: true)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("check does not say %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("check created the file sink's directory (stat: %v)", err)
	}
	if streamExists(t, natsURL, stream) {
		t.Errorf("check created stream %s", stream)
	}
	if topicExists(t, brokers, topic) {
		t.Errorf("check created topic %s", topic)
	}
	if confirmed, _ := slotState(t, "s_"+db); confirmed != "" {
		t.Errorf("check created slot s_%s", db)
	}
	if n, err := cluster.Query(db, "SELECT count(*) FROM pg_publication WHERE pubname = 'pgs_"+db+"'"); err != nil || n != "0" {
		t.Errorf("publication pgs_%s: count %s, %v; want none", db, n, err)
	}
}

// topicExists reports whether the cluster has topic.
func topicExists(t *testing.T, brokers []string, topic string) bool {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	return len(resp.Topics) == 1 && resp.Topics[0].ErrorCode == 0
}

// A sink that cannot be opened is named in run's error, as one that cannot be reached is.
func TestSinkOpenErrorNamesTheSink(t *testing.T) {
	db := newDB(t)
	dir := t.TempDir()
	blocker := filepath.Join(dir, "blocker")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A regular file where the sink's directory would be: it cannot be created, even by root.
	cfg := secretConfig(t, dir, db, "", "  - type: file\n    name: out\n    path: "+filepath.Join(blocker, "sub", "changes.jsonl")+"\n")
	for _, cmd := range []string{"run", "check"} {
		out, code := runBinary(t, 90*time.Second, cmd, "--config", cfg)
		t.Logf("%s (exit %d):\n%s", cmd, code, out)
		if code == 0 {
			t.Fatalf("%s: exit 0", cmd)
		}
		if !strings.Contains(out, "sink out (file)") || !strings.Contains(out, blocker) {
			t.Errorf("%s: the error does not name the sink and the path", cmd)
		}
	}
}
