package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	ckfile "github.com/pgstream/pgstream/checkpoint/file"
	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/sinks/file"
)

// walSenderTimeout is short so that a stuck sink would be noticed by the server within a test.
const walSenderTimeout = 3 * time.Second

var (
	cluster *pgtest.Cluster
	dbSeq   atomic.Int32
)

func TestMain(m *testing.M) {
	c, err := pgtest.Start(pgtest.Options{Settings: map[string]string{
		"wal_sender_timeout":        fmt.Sprintf("'%dms'", walSenderTimeout.Milliseconds()),
		"max_wal_senders":           "20",
		"max_replication_slots":     "30",
		"logical_decoding_work_mem": "'64kB'",
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	cluster = c
	code := m.Run()
	c.Close()
	os.Exit(code)
}

// newDB creates a database of the test's own, so that slots, publications and tables never clash.
func newDB(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("e2e_%d", dbSeq.Add(1))
	if err := cluster.CreateDB(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropSlots(t, name) })
	return name
}

// dropSlots drops the replication slots of db once the test is over, so that they neither count
// against max_replication_slots nor hold WAL back for the tests after it. A slot stays active
// until its walsender has noticed that the client went away, which after a SIGKILL or a closed
// connection takes a moment: such walsenders are ended, and the drop is retried until it is done.
func dropSlots(t *testing.T, db string) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		_ = cluster.Exec("postgres", fmt.Sprintf(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = '%s' AND active_pid IS NOT NULL`, db))
		err := cluster.Exec("postgres", fmt.Sprintf(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '%s' AND NOT active`, db))
		left, qerr := cluster.Query("postgres", fmt.Sprintf(`SELECT count(*) FROM pg_replication_slots WHERE database = '%s'`, db))
		if err == nil && qerr == nil && left == "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the replication slots of database %s are still there 60s after the test (%s left; drop: %v; count: %v)", db, left, err, qerr)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func exec1(t *testing.T, db, sql string) {
	t.Helper()
	cluster.MustExec(t, db, sql)
}

type event struct {
	ID             string          `json:"id"`
	Op             string          `json:"op"`
	Before         json.RawMessage `json:"before"`
	After          json.RawMessage `json:"after"`
	UnchangedToast []string        `json:"unchanged_toast"`
	Message        *struct {
		Prefix        string `json:"prefix"`
		Content       string `json:"content"`
		Transactional bool   `json:"transactional"`
	} `json:"message"`
	Source struct {
		Connector string `json:"connector"`
		DB        string `json:"db"`
		Schema    string `json:"schema"`
		Table     string `json:"table"`
		TxID      *int64 `json:"txId"`
		LSN       string `json:"lsn"`
		CommitLSN string `json:"commit_lsn"`
		TsMs      int64  `json:"ts_ms"`
	} `json:"source"`
	TsMs int64  `json:"ts_ms"`
	Raw  string `json:"-"`
}

func (e event) row(which string) map[string]any {
	raw := e.After
	if which == "before" {
		raw = e.Before
	}
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		panic(err)
	}
	return m
}

// readEvents parses a file sink's output once its writer has stopped: every line must be a
// complete, valid event.
func readEvents(t testing.TB, path string) []event {
	t.Helper()
	data := readFile(t, path)
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("%s ends with a torn line", path)
	}
	return parseEvents(t, path, data)
}

// readWrittenEvents parses the complete lines of a file sink's output, for a file that is still
// being written or whose writer was killed. A reader may see a write in progress cut short (a
// write of many pages is not atomic with respect to reads), and a kill may tear the last line
// (which the file sink repairs when it opens the file again): such a last line is left out.
func readWrittenEvents(t testing.TB, path string) []event {
	t.Helper()
	data := readFile(t, path)
	return parseEvents(t, path, data[:bytes.LastIndexByte(data, '\n')+1])
}

// readEventsAfterKill is readWrittenEvents for a file whose writer was just killed.
func readEventsAfterKill(t testing.TB, path string) []event {
	t.Helper()
	return readWrittenEvents(t, path)
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return data
}

// parseEvents parses whole lines of events.
func parseEvents(t testing.TB, path string, data []byte) []event {
	t.Helper()
	var out []event
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		if !json.Valid([]byte(line)) {
			t.Fatalf("invalid JSON line in %s: %q", path, line)
		}
		var e event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("bad event %q: %v", line, err)
		}
		e.Raw = line
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return out
}

// waitEvents polls the file until cond holds for its complete events (the writer may be writing).
func waitEvents(t testing.TB, path string, timeout time.Duration, cond func([]event) bool) []event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		evs := readWrittenEvents(t, path)
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for events in %s; have %d:\n%s", timeout, path, len(evs), tail(evs, 10))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitUntil polls cond until it holds; what names the awaited state in the failure. ended (nil for
// none) reports, with a message, that the process the test waits on is gone.
func waitUntil(t testing.TB, timeout time.Duration, what string, ended func() (string, bool), cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if ended != nil {
			if msg, ok := ended(); ok {
				t.Fatalf("waiting until %s: %s", what, msg)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func atLeast(n int) func([]event) bool { return func(e []event) bool { return len(e) >= n } }

func tail(evs []event, n int) string {
	var sb strings.Builder
	for i := max(0, len(evs)-n); i < len(evs); i++ {
		sb.WriteString(evs[i].Raw)
		sb.WriteByte('\n')
	}
	return sb.String()
}

// runner is an in-process pipeline streaming one database to a file sink.
type runner struct {
	t      testing.TB
	p      *pipeline.Pipeline
	cancel context.CancelFunc
	done   chan error
	result error
	ended  bool
	path   string
	ckpt   string
	slot   string
	db     string
	pg     *pgtest.Cluster // the cluster of db
}

type runOpts struct {
	tables  []string
	extra   []pipeline.SinkSpec
	wrap    func(sinks.Sink) sinks.Sink
	pcfg    pipeline.Config
	status  time.Duration
	dir     string
	slot    string
	noStart bool
	health  *health.Board    // observes the pipeline when set
	metrics *metrics.Metrics // observes the pipeline when set
	pg      *pgtest.Cluster  // the cluster of db; nil: the shared one
	alsoLog *zap.Logger      // gets every line the pipeline logs, besides the test's log
}

func sourceConfig(db, slot string, tables []string, status time.Duration) replication.Config {
	return replication.Config{URL: cluster.URL(db), Slot: slot, Publication: "pgs_" + slot, Tables: tables, StatusInterval: status}
}

func startPipeline(t testing.TB, db string, o runOpts) *runner {
	t.Helper()
	dir := o.dir
	if dir == "" {
		dir = t.TempDir()
	}
	slot := o.slot
	if slot == "" {
		slot = "s_" + db
	}
	r := &runner{t: t, path: filepath.Join(dir, "changes.jsonl"), ckpt: filepath.Join(dir, "checkpoint.json"), slot: slot, db: db}
	fs, err := file.New(file.Config{Path: r.path}, sinks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	var s sinks.Sink = fs
	if o.wrap != nil {
		s = o.wrap(fs)
	}
	specs := append([]pipeline.SinkSpec{{Name: "file", Sink: s}}, o.extra...)
	pcfg := o.pcfg
	if pcfg.CheckpointInterval == 0 {
		pcfg.CheckpointInterval = 100 * time.Millisecond
	}
	if pcfg.Snapshot.Mode == "" {
		// Tests of streaming check exact event sequences; the snapshot tests ask for one.
		pcfg.Snapshot.Mode = pipeline.SnapshotNever
	}
	status := o.status
	if status == 0 {
		status = 300 * time.Millisecond
	}
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	if o.alsoLog != nil {
		log = zap.New(zapcore.NewTee(log.Core(), o.alsoLog.Core()))
	}
	src := sourceConfig(db, slot, o.tables, status)
	r.pg = cluster
	if o.pg != nil {
		src.URL, r.pg = o.pg.URL(db), o.pg
	}
	p, err := pipeline.New(pcfg, src, ckfile.New(r.ckpt, ckfile.OSFS()), specs, log)
	if err != nil {
		t.Fatal(err)
	}
	r.p = p
	if o.health != nil || o.metrics != nil {
		p.Observe(o.metrics, o.health)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop shuts the pipeline down and returns Run's result.
func (r *runner) stop() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.cancel = nil
	if r.ended {
		return r.result
	}
	select {
	case err := <-r.done:
		r.ended, r.result = true, err
		return err
	case <-time.After(60 * time.Second):
		r.t.Errorf("pipeline did not stop within 60s")
		return errors.New("timeout")
	}
}

// exited reports, with a message, whether Run has returned; its result stays in r.result.
func (r *runner) exited() (string, bool) {
	if r.ended {
		return fmt.Sprintf("pipeline ended: %v", r.result), true
	}
	select {
	case err := <-r.done:
		r.ended, r.result = true, err
		return fmt.Sprintf("pipeline ended: %v", err), true
	default:
		return "", false
	}
}

// waitStreaming waits until the pipeline is streaming: the slot's walsender has started replication.
// With an initial snapshot, that is once the snapshot has been read.
func (r *runner) waitStreaming() {
	r.t.Helper()
	waitSlotStreaming(r.t, r.pg, r.slot, func() (string, bool) {
		if msg, ok := r.exited(); ok {
			return msg + " (before streaming)", true
		}
		return "", false
	})
}

// waitSlotStreaming waits until the slot's walsender has started replication. The slot is also
// active while it is being created (and while its snapshot is exported), before its consistent
// point: a change committed then is not in the slot. Streaming has started once its walsender is
// past START_REPLICATION. ended reports, with a message, that the client gave up.
func waitSlotStreaming(t testing.TB, pg *pgtest.Cluster, slot string, ended func() (string, bool)) {
	t.Helper()
	const timeout = 120 * time.Second // an initial snapshot is read first, under -race on a busy machine
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if msg, ok := ended(); ok {
			t.Fatal(msg)
		}
		v, err := pg.Query("postgres", fmt.Sprintf(`SELECT r.state FROM pg_replication_slots s
JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = '%s'`, slot))
		if err == nil && (v == "streaming" || v == "catchup") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("slot %s was not streaming within %s", slot, timeout)
}

// waitSlotInactive waits until no walsender uses the slot any more: after a client closed its
// connection, the walsender releases the slot only once it has noticed.
func waitSlotInactive(t testing.TB, slot string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, pid := slotState(t, slot); pid == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s still active 60s after its client stopped", slot)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func slotState(t testing.TB, slot string) (confirmed string, pid string) {
	t.Helper()
	rows, err := cluster.QueryRows("postgres", fmt.Sprintf("SELECT coalesce(confirmed_flush_lsn::text,''), coalesce(active_pid::text,'') FROM pg_replication_slots WHERE slot_name = '%s'", slot))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		return "", ""
	}
	return rows[0][0], rows[0][1]
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the real pgstream command once per test run.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pgstream-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "pgstream")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/pgstream/pgstream/cmd/pgstream")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}
