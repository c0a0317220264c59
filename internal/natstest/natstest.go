package natstest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgstream/pgstream/internal/testport"
)

// LocalURL is the address of a shared server, used when it answers with JetStream.
const LocalURL = "nats://127.0.0.1:4222"

var (
	probeOnce sync.Once
	localOK   bool

	// started maps each embedded server to the port and store directory it was started with.
	started sync.Map
)

type placement struct {
	port     int
	storeDir string
}

// URL returns the URL of a NATS server with JetStream: LocalURL when that server is usable,
// otherwise a fresh embedded server owned by t.
func URL(t testing.TB) string {
	t.Helper()
	probeOnce.Do(func() { localOK = probe(LocalURL) })
	if localOK {
		return LocalURL
	}
	return StartEmbedded(t).ClientURL()
}

// probe reports whether url answers and has JetStream enabled for its default account.
func probe(url string) bool {
	nc, err := nats.Connect(url, nats.Timeout(500*time.Millisecond), nats.NoReconnect())
	if err != nil {
		return false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err == nil
}

// StartEmbedded starts an embedded server with JetStream on a free port of 127.0.0.1 (see testport:
// no outgoing connection or port-0 listener can take it while Restart has the server down), its
// store in a new temporary directory. It is shut down at cleanup.
func StartEmbedded(t testing.TB) *server.Server {
	t.Helper()
	port, err := testport.Free()
	if err != nil {
		t.Fatal(err)
	}
	return start(t, port, t.TempDir())
}

// Restart shuts s down (if it is still running) and starts a new server on the same port with the same
// store directory, so clients reconnect to it and find their streams. The new server is shut
// down at cleanup.
func Restart(t testing.TB, s *server.Server) *server.Server {
	t.Helper()
	v, ok := started.Load(s)
	if !ok {
		t.Fatalf("server %v was not started by natstest", s)
	}
	p := v.(placement)
	Stop(s)
	return start(t, p.port, p.storeDir)
}

// Stop shuts s down and waits until it has stopped.
func Stop(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

func start(t testing.TB, port int, storeDir string) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  storeDir,
		NoLog:     true,
		NoSigs:    true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("new nats server: %v", err)
	}
	s.Start()
	t.Cleanup(func() {
		Stop(s)
		started.Delete(s)
	})
	if !s.ReadyForConnections(60 * time.Second) {
		t.Fatalf("nats server on port %d not ready", port)
	}
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("nats server address %v is not TCP", s.Addr())
	}
	started.Store(s, placement{port: addr.Port, storeDir: storeDir})
	return s
}
