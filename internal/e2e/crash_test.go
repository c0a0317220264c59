package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgstream/pgstream/lsn"
)

// writeConfig writes a config streaming db to a file sink in dir, plus extraSinks (YAML list items),
// without a snapshot.
func writeConfig(t testing.TB, dir, db, slot string, extraSinks string) string {
	t.Helper()
	return writeConfigSnapshot(t, dir, db, slot, extraSinks, "  mode: never\n", "warn")
}

// writeConfigSnapshot is writeConfig with the given snapshot section's lines and log level.
func writeConfigSnapshot(t testing.TB, dir, db, slot, extraSinks, snapshot, level string) string {
	t.Helper()
	return binaryConfig{url: cluster.URL(db), slot: slot, source: "  status_interval: 200ms\n", sinks: extraSinks,
		pipeline: "  checkpoint_interval: 50ms\n  max_batch_events: 64\n", snapshot: snapshot, level: level, jsonFormat: true}.write(t, dir)
}

type proc struct {
	cmd    *exec.Cmd
	stderr *outBuffer // stdout and stderr; safe to read while the process writes
	done   chan error
}

// outBuffer collects a process's output; it may be read while the process still writes.
type outBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *outBuffer) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *outBuffer) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

func startBinary(t testing.TB, args ...string) *proc {
	t.Helper()
	return startBinaryEnv(t, nil, args...)
}

// startBinaryEnv starts the pgstream binary with extra environment variables.
func startBinaryEnv(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr outBuffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stderr: &stderr, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// exited reports, with a message, whether the process has ended. Its result stays in p.done.
func (p *proc) exited() (string, bool) {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Sprintf("pgstream exited: %v\n%s", err, p.stderr), true
	default:
		return "", false
	}
}

// readCheckpoint finds the two positions in the checkpoint file, wherever the format nests them.
func readCheckpoint(t testing.TB, path string) (commit, flush lsn.LSN) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && (k == "commit_lsn" || k == "flush_lsn") {
					l, err := lsn.Parse(s)
					if err != nil {
						t.Fatalf("checkpoint %s = %q: %v", k, s, err)
					}
					if k == "commit_lsn" {
						commit = l
					} else {
						flush = l
					}
				}
				walk(e)
			}
		}
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("checkpoint file %s is not JSON: %v", path, err)
	}
	walk(v)
	return commit, flush
}

// TestCrashSafety kills the real binary with SIGKILL at random moments during a workload, restarts
// it, and checks that every committed change reaches the file sink at least once, in commit order
// per row, and that the slot is never confirmed past what the sink holds.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: several kill/restart rounds")
	}
	db := newDB(t)
	exec1(t, db, `CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, note text)`)
	dir := t.TempDir()
	slot := "crash_" + db
	cfgPath := writeConfig(t, dir, db, slot, "")
	out := filepath.Join(dir, "changes.jsonl")
	// The slot exists before the workload starts, so every change of the workload is in it.
	exec1(t, db, fmt.Sprintf(`CREATE PUBLICATION pgs_%s FOR ALL TABLES`, slot))
	exec1(t, db, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, slot))

	// The workload: inserts, version-bumping updates and deletes, committed in transactions of
	// 1–20 statements. committed[id] lists the versions each row went through, in commit order.
	type rowHist struct {
		versions []int
		deleted  bool
	}
	var mu sync.Mutex
	hist := map[int]*rowHist{}
	next := 1
	live := []int{}
	type op struct {
		id, v int
		del   bool
	}
	wl := sqlWorkload(t, cluster, db, 2*time.Millisecond, func(int) (string, func()) {
		var sql bytes.Buffer
		sql.WriteString("BEGIN;")
		var ops []op
		n := 1 + rand.IntN(20)
		touched := map[int]bool{}
		for i := 0; i < n; i++ {
			switch r := rand.IntN(10); {
			case r < 5 || len(live) < 10:
				id := next
				next++
				fmt.Fprintf(&sql, "INSERT INTO items VALUES (%d, 0, 'n%d');", id, id)
				ops = append(ops, op{id: id, v: 0})
				live = append(live, id)
				touched[id] = true
			case r < 9:
				id := live[rand.IntN(len(live))]
				if touched[id] {
					continue
				}
				touched[id] = true
				mu.Lock()
				v := len(hist[id].versions)
				mu.Unlock()
				fmt.Fprintf(&sql, "UPDATE items SET v = %d WHERE id = %d;", v, id)
				ops = append(ops, op{id: id, v: v})
			default:
				k := rand.IntN(len(live))
				id := live[k]
				if touched[id] {
					continue
				}
				touched[id] = true
				live = append(live[:k], live[k+1:]...)
				fmt.Fprintf(&sql, "DELETE FROM items WHERE id = %d;", id)
				ops = append(ops, op{id: id, del: true})
			}
		}
		sql.WriteString("COMMIT;")
		return sql.String(), func() {
			mu.Lock()
			defer mu.Unlock()
			for _, o := range ops {
				h := hist[o.id]
				if h == nil {
					h = &rowHist{}
					hist[o.id] = h
				}
				if o.del {
					h.deleted = true
				} else {
					h.versions = append(h.versions, o.v)
				}
			}
		}
	})

	size := func() int64 {
		st, err := os.Stat(out)
		if err != nil {
			return 0
		}
		return st.Size()
	}
	for round := 0; round < 5; round++ {
		before := size()
		p := startBinary(t, "run", "--config", cfgPath)
		// Kill at a random moment once this run has written changes: a kill before it streams
		// anything would show nothing.
		waitUntil(t, 60*time.Second, fmt.Sprintf("round %d: pgstream writes changes", round), p.exited, func() bool {
			return size() > before
		})
		time.Sleep(time.Duration(rand.IntN(800)) * time.Millisecond)
		if msg, ok := p.exited(); ok {
			t.Fatalf("round %d: %s", round, msg)
		}
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		// The slot must never be confirmed past the durable checkpoint, and the checkpoint never
		// past what the file holds.
		ckCommit, ckFlush := readCheckpoint(t, filepath.Join(dir, "checkpoint.json"))
		confirmedText, _ := slotState(t, slot)
		if confirmedText != "" {
			confirmed, err := lsn.Parse(confirmedText)
			if err != nil {
				t.Fatal(err)
			}
			if confirmed > ckFlush {
				t.Fatalf("round %d: slot confirmed_flush_lsn %s is past the checkpoint's flush position %s", round, confirmed, ckFlush)
			}
		}
		if ckCommit != 0 {
			found := false
			for _, e := range readEventsAfterKill(t, out) {
				if l, _ := lsn.Parse(e.Source.CommitLSN); l == ckCommit {
					found = true
					break
				}
			}
			if !found && ckCommit > 0 {
				// The checkpoint may name a transaction that touched nothing published only if it
				// came from a keepalive; a commit LSN always belongs to a delivered transaction.
				t.Fatalf("round %d: checkpoint commit %s is not in the file sink", round, ckCommit)
			}
		}
	}
	wl.MustStop(t)

	// A final run drains everything, then a SIGTERM stops it cleanly.
	p := startBinary(t, "run", "--config", cfgPath)
	mu.Lock()
	wantChanges := 0
	for _, h := range hist {
		wantChanges += len(h.versions)
		if h.deleted {
			wantChanges++
		}
	}
	mu.Unlock()
	distinct := func(evs []event) int {
		ids := map[string]bool{}
		for _, e := range evs {
			ids[e.ID] = true
		}
		return len(ids)
	}
	evs := waitEvents(t, out, 300*time.Second, func(e []event) bool { return distinct(e) >= wantChanges })
	stopBinary(t, p)
	evs = readEvents(t, out)

	// First occurrence of each id, in file order, per row.
	type seen struct {
		versions []int
		deleted  bool
	}
	got := map[int]*seen{}
	firstID := map[string]bool{}
	dups := 0
	for _, e := range evs {
		if firstID[e.ID] {
			dups++
			continue
		}
		firstID[e.ID] = true
		var idv json.Number
		var vv json.Number
		switch e.Op {
		case "c", "u":
			a := e.row("after")
			idv, vv = a["id"].(json.Number), a["v"].(json.Number)
		case "d":
			idv = e.row("before")["id"].(json.Number)
		default:
			t.Fatalf("unexpected op in %s", e.Raw)
		}
		id, _ := strconv.Atoi(idv.String())
		s := got[id]
		if s == nil {
			s = &seen{}
			got[id] = s
		}
		if e.Op == "d" {
			s.deleted = true
			continue
		}
		v, _ := strconv.Atoi(vv.String())
		s.versions = append(s.versions, v)
	}
	ids := make([]int, 0, len(hist))
	for id := range hist {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		h, s := hist[id], got[id]
		if s == nil {
			t.Fatalf("row %d: no event at all (committed versions %v)", id, h.versions)
		}
		if fmt.Sprint(h.versions) != fmt.Sprint(s.versions) {
			t.Fatalf("row %d: versions in the sink %v, committed %v", id, s.versions, h.versions)
		}
		if h.deleted != s.deleted {
			t.Fatalf("row %d: deleted %v in the sink, committed %v", id, s.deleted, h.deleted)
		}
	}
	t.Logf("%d rows, %d changes, %d events in the file (%d re-sent after kills)", len(hist), wantChanges, len(evs), dups)
}
