package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgstream/pgstream/lsn"
)

// fileSinkRun is the real binary streaming two tables of a database of its own to a file sink,
// without a snapshot, from a slot created before any change, so that every change is in the slot.
type fileSinkRun struct {
	db, slot, cfg, out, ckpt string
	tables                   []string
}

func newFileSinkRun(t *testing.T, name string) *fileSinkRun {
	t.Helper()
	db := newDB(t)
	r := &fileSinkRun{db: db, slot: name + "_" + db, tables: []string{"fs_a", "fs_b"}}
	createSnapshotTables(t, db, r.tables, 0)
	dir := t.TempDir()
	r.cfg = writeConfig(t, dir, db, r.slot, "")
	r.out, r.ckpt = filepath.Join(dir, "changes.jsonl"), filepath.Join(dir, "checkpoint.json")
	exec1(t, db, fmt.Sprintf(`CREATE PUBLICATION pgs_%s FOR ALL TABLES`, r.slot))
	exec1(t, db, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, r.slot))
	return r
}

// workload runs snapshotWorkload on the tables until the returned function is called, which waits
// for it to end.
func (r *fileSinkRun) workload(t *testing.T) (stop func()) {
	wl := snapshotWorkload(t, r.db, r.tables, 0)
	return func() { wl.MustStop(t) }
}

// waitLines waits until the file at path holds at least n complete lines while p runs.
func waitLines(t *testing.T, p *proc, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		if bytes.Count(data, []byte{'\n'}) >= n {
			return
		}
		select {
		case err := <-p.done:
			t.Fatalf("pgstream exited (%v) before %s held %d lines:\n%s", err, path, n, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds fewer than %d lines after 60s", path, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFailure waits for p to exit after the file sink's file was changed underneath it, and checks
// that it exited non-zero saying so. A pgstream still running after a minute is reported and killed,
// so that the test goes on to show what was lost.
func waitFailure(t *testing.T, p *proc, want ...string) {
	t.Helper()
	select {
	case err := <-p.done:
		if err == nil {
			t.Errorf("pgstream exited with status 0 after its file was changed underneath it:\n%s", p.stderr)
			return
		}
		out := p.stderr.String()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("pgstream exited (%v), but its output does not say %q:\n%s", err, w, out)
			}
		}
		if i := strings.LastIndex(out, "\npgstream: "); i >= 0 {
			t.Logf("pgstream exited (%v): %s", err, strings.TrimSpace(out[i:]))
		}
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		t.Errorf("pgstream still ran 60s after its file was changed underneath it (killed):\n%s", p.stderr)
	}
}

// checkNotPast checks that neither the checkpoint nor the slot went past what the file held: the
// checkpoint's commit is at most the newest commit in held, and the slot is confirmed at most to the
// checkpoint's flush position.
func (r *fileSinkRun) checkNotPast(t *testing.T, held []event) {
	t.Helper()
	var newest lsn.LSN
	for _, e := range held {
		l, err := lsn.Parse(e.Source.CommitLSN)
		if err != nil {
			t.Fatalf("event %s: commit_lsn: %v", e.ID, err)
		}
		newest = max(newest, l)
	}
	ckCommit, ckFlush := readCheckpoint(t, r.ckpt)
	if ckCommit > newest {
		t.Errorf("the checkpoint's commit %s is past the newest commit %s the file held: acknowledged changes are not in the file", ckCommit, newest)
	}
	if text, _ := slotState(t, r.slot); text != "" {
		confirmed, err := lsn.Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		if confirmed > ckFlush {
			t.Errorf("slot confirmed_flush_lsn %s is past the checkpoint's flush position %s", confirmed, ckFlush)
		}
	}
	t.Logf("the file held commits up to %s; checkpoint commit %s, flush %s", newest, ckCommit, ckFlush)
}

// finish restarts pgstream on the file now at the path, stops the workload, waits until the
// restarted pgstream delivered everything, stops it and checks that the events before the change
// (held) followed by the new file's events give the database's rows: no change was lost.
func (r *fileSinkRun) finish(t *testing.T, held []event, stopWorkload func()) {
	t.Helper()
	before, _ := os.ReadFile(r.out)
	p := startBinary(t, "run", "--config", r.cfg)
	// Let the restarted pgstream stream under load before the workload ends.
	waitLines(t, p, r.out, bytes.Count(before, []byte{'\n'})+200)
	stopWorkload()
	evs := markDone(t, r.db, r.out, r.ckpt, 120*time.Second)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("the restarted pgstream did not exit cleanly: %v\n%s", err, p.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the restarted pgstream did not stop within 60s of SIGTERM")
	}
	// Each event at its first occurrence: the new file repeats what came after the checkpoint.
	seen := map[string]bool{}
	var all []event
	for _, e := range append(append([]event(nil), held...), evs...) {
		if !seen[e.ID] {
			seen[e.ID] = true
			all = append(all, e)
		}
	}
	got, ops := materialize(t, all)
	compareState(t, got, dbState(t, r.db, r.tables))
	t.Logf("%d events held before, %d in the file after the restart, %d distinct; by op: %v", len(held), len(evs), len(all), ops)
}

// TestFileSinkFileDeletedMidStream removes the file sink's file while a workload streams into it.
// pgstream must stop with an error naming the file instead of writing on into the deleted file,
// must not have confirmed anything the file did not hold when it was removed, and a restart (which
// creates a new file) must deliver every change the deleted file did not hold.
func TestFileSinkFileDeletedMidStream(t *testing.T) {
	r := newFileSinkRun(t, "fsdel")
	stopWorkload := r.workload(t)
	p := startBinary(t, "run", "--config", r.cfg)
	waitLines(t, p, r.out, 500)

	// Keep the deleted file open to read afterwards what it held. Everything pgstream wrote before
	// the removal is within the size the file has right after it.
	f, err := os.Open(r.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Remove(r.out); err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	atRemoval := fi.Size()

	waitFailure(t, p, "pgstream: ", r.out+" was deleted while pgstream was writing to it", "the batch was not acknowledged")
	data := make([]byte, atRemoval)
	if _, err := f.ReadAt(data, 0); err != nil {
		t.Fatal(err)
	}
	// A batch being written at the removal may have left a partial line: it was not acknowledged.
	held := parseEvents(t, "the held file", data[:bytes.LastIndexByte(data, '\n')+1])
	r.checkNotPast(t, held)
	if _, err := os.Stat(r.out); !os.IsNotExist(err) {
		t.Fatalf("a file is at %s after pgstream stopped (%v): it should have written nothing more", r.out, err)
	}
	r.finish(t, held, stopWorkload)
}

// TestFileSinkFileTruncated truncates the file sink's file underneath pgstream: to zero while a
// workload streams into it, and in the middle of a line while pgstream is idle. pgstream must stop
// with an error giving both sizes instead of appending, must not have confirmed anything the file
// did not hold when it was truncated, must leave the cut line last (where a restart removes it,
// so that the file never holds an invalid line), and the restart must deliver every change the file
// did not hold.
func TestFileSinkFileTruncated(t *testing.T) {
	t.Run("to zero under load", func(t *testing.T) {
		r := newFileSinkRun(t, "fstrz")
		stopWorkload := r.workload(t)
		p := startBinary(t, "run", "--config", r.cfg)
		waitLines(t, p, r.out, 500)
		// Freeze pgstream so that what the file holds when it is truncated is known.
		data := frozen(t, p, func() []byte {
			data, err := os.ReadFile(r.out)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(r.out, 0); err != nil {
				t.Fatal(err)
			}
			return data
		})
		waitFailure(t, p, "pgstream: ", r.out+" was truncated by something other than pgstream: it holds ", "the batch was not acknowledged")
		held := parseEvents(t, "the held file", data[:bytes.LastIndexByte(data, '\n')+1])
		r.checkNotPast(t, held)
		r.finish(t, held, stopWorkload)
	})

	t.Run("mid-line while idle", func(t *testing.T) {
		r := newFileSinkRun(t, "fstrh")
		stopWorkload := r.workload(t)
		p := startBinary(t, "run", "--config", r.cfg)
		waitLines(t, p, r.out, 500)
		stopWorkload()
		// pgstream is idle once the checkpoint holds a message written after the workload ended.
		marker := r.deliverMarker(t)
		data, err := os.ReadFile(r.out)
		if err != nil {
			t.Fatal(err)
		}
		// Cut in the middle of a line near the middle of the file.
		cut := int64(len(data) / 2)
		for data[cut-1] == '\n' || data[cut] == '\n' {
			cut++
		}
		if err := os.Truncate(r.out, cut); err != nil {
			t.Fatal(err)
		}
		stopWorkload = r.workload(t)
		waitFailure(t, p, "pgstream: ", fmt.Sprintf("%s was truncated by something other than pgstream: it holds %d bytes where pgstream wrote %d; %d bytes of acknowledged changes are gone",
			r.out, cut, len(data), int64(len(data))-cut))
		held := parseEvents(t, "the held file", data)
		r.checkNotPast(t, held)
		if ck, _ := readCheckpoint(t, r.ckpt); ck != marker {
			t.Errorf("the checkpoint's commit moved from %s to %s after the truncation", marker, ck)
		}
		after, err := os.ReadFile(r.out)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(after)) != cut {
			t.Errorf("pgstream wrote %d bytes after the file was truncated to %d", int64(len(after))-cut, cut)
		}
		// The restart cuts the partial line and appends after the complete lines the truncation
		// left; every line of the file is a valid event (finish reads it with readEvents, which
		// fails on an invalid line).
		r.finish(t, held, stopWorkload)
		final, err := os.ReadFile(r.out)
		if err != nil {
			t.Fatal(err)
		}
		if kept := data[:bytes.LastIndexByte(data[:cut], '\n')+1]; !bytes.HasPrefix(final, kept) {
			t.Fatalf("the file after the restart does not begin with the %d bytes of complete lines the truncation left", len(kept))
		}
	})
}

// deliverMarker writes a message through the stream and waits until the file holds it and the
// checkpoint's commit reached it: then pgstream acknowledged everything committed before, and with
// no workload running it writes nothing more. It returns the message's commit LSN.
func (r *fileSinkRun) deliverMarker(t *testing.T) lsn.LSN {
	t.Helper()
	nonce := fmt.Sprintf("idle-%d", rand.Int64())
	exec1(t, r.db, fmt.Sprintf("SELECT pg_logical_emit_message(true, 'e2e.idle', '%s')", nonce))
	want := base64.StdEncoding.EncodeToString([]byte(nonce))
	deadline := time.Now().Add(60 * time.Second)
	var at lsn.LSN
	for {
		if at == 0 {
			for _, e := range readEvents(t, r.out) {
				if m := e.Message; m != nil && m.Prefix == "e2e.idle" && m.Content == want {
					l, err := lsn.Parse(e.Source.CommitLSN)
					if err != nil {
						t.Fatal(err)
					}
					at = l
				}
			}
		}
		if ck, _ := readCheckpoint(t, r.ckpt); at != 0 && ck >= at {
			return at
		}
		if time.Now().After(deadline) {
			t.Fatalf("the marker message (commit %s) did not reach the file and the checkpoint within 60s", at)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// frozen runs f while every thread of p is stopped by SIGSTOP, then resumes p.
func frozen[T any](t *testing.T, p *proc, f func() T) T {
	t.Helper()
	pid := p.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Errorf("resume pgstream: %v", err)
		}
	}()
	// The signal is delivered asynchronously: wait until /proc shows every thread stopped.
	deadline := time.Now().Add(30 * time.Second)
	for !allStopped(t, pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pgstream (pid %d) not stopped 30s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
	return f()
}

// allStopped reports whether every thread of process pid is in the stopped state.
func allStopped(t *testing.T, pid int) bool {
	t.Helper()
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("list the threads of pgstream: %v", err)
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			return false // a thread ending or starting: look again
		}
		// pid (comm) state ...: the command may hold spaces and parentheses.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) == 0 || (fields[0] != "T" && fields[0] != "t") {
			return false
		}
	}
	return len(tasks) > 0
}
