package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// ErrChild wraps the failure of a measured child process.
var ErrChild = errors.New("child process failed")

// Usage is what one measured client process cost.
type Usage struct {
	Wall   time.Duration // from start to exit
	User   time.Duration // user CPU time
	System time.Duration // system CPU time
	// MaxRSS is the peak resident set size in bytes: the child's VmHWM from /proc/<pid>/status,
	// read every few milliseconds while it runs. Growth in its last few milliseconds may be missed.
	MaxRSS int64
	// RusageMaxRSS is ru_maxrss (in bytes) from wait4. It is not used as the peak: a child started
	// by a Go program shares the parent's memory until it execs, and Linux folds that memory's
	// high-water mark into the child's maxrss, so it reports at least the parent's own peak.
	RusageMaxRSS int64
	// ReadCalls and WriteCalls are the read and write system calls the child made (syscr and syscw of
	// /proc/<pid>/io, last read a few milliseconds before it exited).
	ReadCalls, WriteCalls int64
}

// CPU is user plus system time.
func (u Usage) CPU() time.Duration { return u.User + u.System }

// RunChild runs cmd to completion and returns its wall time and resource usage. cmd must not have
// been started; its Stderr, when nil, is captured and the last 4 KiB of it are quoted in the error
// of a failed run. The child is killed when its wall time passes timeout (0: no limit).
func RunChild(cmd *exec.Cmd, timeout time.Duration) (Usage, error) {
	var stderr tailBuffer
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Usage{}, fmt.Errorf("%w: start %s: %w", ErrChild, cmd.Path, err)
	}
	var timer *time.Timer
	if timeout > 0 {
		timer = time.AfterFunc(timeout, func() { _ = cmd.Process.Kill() })
	}
	stop := make(chan struct{})
	polled := make(chan procStats, 1)
	go func() { polled <- pollProc(cmd.Process.Pid, stop) }()
	err := cmd.Wait()
	wall := time.Since(start)
	close(stop)
	ps := <-polled
	peak := ps.hwm
	if timer != nil {
		timer.Stop()
	}
	if err != nil {
		return Usage{}, fmt.Errorf("%w: %s: %w: %s", ErrChild, cmd.Path, err, bytes.TrimSpace(stderr.b))
	}
	u := Usage{Wall: wall}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return Usage{}, fmt.Errorf("%w: no resource usage for %s on this platform", ErrChild, cmd.Path)
	}
	u.User = time.Duration(ru.Utime.Nano())
	u.System = time.Duration(ru.Stime.Nano())
	u.RusageMaxRSS = ru.Maxrss * 1024 // Linux reports KiB
	u.MaxRSS = peak
	u.ReadCalls, u.WriteCalls = ps.syscr, ps.syscw
	if peak == 0 {
		return Usage{}, fmt.Errorf("%w: could not read the peak RSS of %s from /proc", ErrChild, cmd.Path)
	}
	return u, nil
}

// procPoll is how often pollProc reads /proc.
const procPoll = 5 * time.Millisecond

type procStats struct{ hwm, syscr, syscw int64 }

// pollProc reads VmHWM and the system call counts of pid until stop is closed, and returns the
// largest values seen. Reads fail once the process has exited; the last successful ones stand.
func pollProc(pid int, stop <-chan struct{}) procStats {
	status := fmt.Sprintf("/proc/%d/status", pid)
	io := fmt.Sprintf("/proc/%d/io", pid)
	var ps procStats
	buf := make([]byte, 8<<10) // reused: this loop runs beside the measured child
	t := time.NewTicker(procPoll)
	defer t.Stop()
	for {
		if b, ok := readSmall(status, buf); ok {
			if v, ok := parseHWM(b); ok {
				ps.hwm = max(ps.hwm, v)
			}
		}
		if b, ok := readSmall(io, buf); ok {
			if r, w, ok := parseIOCalls(b); ok {
				ps.syscr, ps.syscw = max(ps.syscr, r), max(ps.syscw, w)
			}
		}
		select {
		case <-stop:
			return ps
		case <-t.C:
		}
	}
}

// readSmall reads the file at path into buf; false when it cannot be read or does not fit.
func readSmall(path string, buf []byte) ([]byte, bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	n, err := io.ReadFull(f, buf)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return buf[:n], true
	}
	return nil, false // an error, or the file is larger than buf
}

// parseIOCalls returns syscr and syscw of the text of a /proc/<pid>/io file.
func parseIOCalls(b []byte) (r, w int64, ok bool) {
	var gotR, gotW bool
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		k, v, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil {
			continue
		}
		switch string(k) {
		case "syscr":
			r, gotR = n, true
		case "syscw":
			w, gotW = n, true
		}
	}
	return r, w, gotR && gotW
}

// parseHWM returns the VmHWM of the text of a /proc/<pid>/status file, in bytes.
func parseHWM(b []byte) (int64, bool) {
	i := bytes.Index(b, []byte("VmHWM:"))
	if i < 0 {
		return 0, false
	}
	line := b[i+len("VmHWM:"):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	var kib int64
	if _, err := fmt.Sscanf(string(bytes.TrimSpace(line)), "%d kB", &kib); err != nil {
		return 0, false
	}
	return kib * 1024, true
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct{ b []byte }

const tailMax = 4 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = append(t.b[:0], t.b[len(t.b)-tailMax:]...)
	}
	return len(p), nil
}

// CountLines returns the number of '\n' bytes in the file at path.
func CountLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read %s: %w", path, err)
		}
	}
}

// FsyncProbe appends size bytes to a new file in dir and fsyncs it, n times, and returns how long
// each append and fsync took. It measures the disk the file sink acknowledges on.
func FsyncProbe(dir string, n, size int) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := bytes.Repeat([]byte{'x'}, size)
	out := make([]time.Duration, 0, n)
	for range n {
		t := time.Now()
		if _, err := f.Write(buf); err != nil {
			return out, fmt.Errorf("fsync probe: %w", err)
		}
		if err := f.Sync(); err != nil {
			return out, fmt.Errorf("fsync probe: %w", err)
		}
		out = append(out, time.Since(t))
	}
	return out, nil
}
