package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgstream/pgstream/sinks"
)

// crashChildEnv names the environment variable that turns the test binary into the crash test's
// writer process; its value is the output file's path.
const crashChildEnv = "PGSTREAM_FILE_SINK_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		if err := crashChild(path); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild appends numbered events to path until it is killed. Event n is {"n":n,...} and is the
// file's line n (from 0). After each Write returns, it appends the number of lines acknowledged so far
// to path+".acked".
func crashChild(path string) error {
	s, err := New(Config{Path: path}, sinks.Env{})
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	next := bytes.Count(data, []byte{'\n'})
	acked, err := os.OpenFile(path+".acked", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	ctx := context.Background()
	b := &sinks.Batch{}
	var buf []byte
	for {
		b.Events = b.Events[:0]
		buf = buf[:0]
		events := 1 + rand.IntN(2000)
		offsets := make([]int, 0, events+1)
		for i := range events {
			offsets = append(offsets, len(buf))
			buf = fmt.Appendf(buf, `{"n":%d,"pad":"%s"}`, next+i, strings.Repeat("p", rand.IntN(400)))
		}
		offsets = append(offsets, len(buf))
		for i := range events {
			b.Events = append(b.Events, sinks.Event{Op: sinks.OpCreate, Value: buf[offsets[i]:offsets[i+1]]})
		}
		if err := s.Write(ctx, b); err != nil {
			return err
		}
		next += events
		if _, err := fmt.Fprintf(acked, "%d\n", next); err != nil {
			return err
		}
	}
}

// lastAcked returns the last complete number in the side file, and the file's size.
func lastAcked(t *testing.T, path string) (int, int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	size := len(data)
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		return 0, size
	}
	data = data[:end]
	n, err := strconv.Atoi(string(data[bytes.LastIndexByte(data, '\n')+1:]))
	if err != nil {
		t.Fatalf("side file: %v", err)
	}
	return n, size
}

// TestCrash kills a writing process at random moments and checks after each kill that the file
// reopens with complete lines only, numbered without gaps, holding at least every acknowledged event.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "out.jsonl")
	sidePath := path + ".acked"
	const rounds = 6
	repaired := 0
	for round := range rounds {
		_, sideBefore := lastAcked(t, sidePath)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let the child acknowledge at least one batch, then kill it at a random moment.
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, size := lastAcked(t, sidePath); size > sideBefore {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("round %d: child acknowledged nothing; stderr: %s", round, stderr.String())
			}
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v before it was killed; stderr: %s", round, err, stderr.String())
		}

		acked, _ := lastAcked(t, sidePath)
		s, err := New(Config{Path: path}, sinks.Env{})
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		if s.Dropped() > 0 {
			repaired++
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		lines := checkLines(t, path)
		if lines < acked {
			t.Fatalf("round %d: file holds %d events, %d were acknowledged", round, lines, acked)
		}
		t.Logf("round %d: %d acknowledged, %d in the file, torn tail of %d bytes", round, acked, lines, s.Dropped())
	}
	t.Logf("%d of %d kills left a torn tail", repaired, rounds)
}

// checkLines verifies that every line of path is a complete JSON event and that line i holds event i,
// and returns the number of lines.
func checkLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		var ev struct{ N *int }
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.N == nil {
			t.Fatalf("line %d is not a complete event (%v): %.80q", n, err, sc.Bytes())
		}
		if *ev.N != n {
			t.Fatalf("line %d holds event %d", n, *ev.N)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
