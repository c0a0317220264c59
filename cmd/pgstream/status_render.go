package main

// How pgstream status prints what it gathered: the text report and the JSON form.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/pgstream/pgstream/internal/inspect"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/replication"
)

// renderStatus prints the picture for people. now is the time "ago" is measured from.
func renderStatus(w io.Writer, r *statusReport, v verdict, now time.Time) {
	fmt.Fprintf(w, "pgstream status: %s (exit %d)\n", statusNames[v.Code], v.Code)
	for _, why := range v.Reasons {
		fmt.Fprintf(w, "  - %s\n", why)
	}
	fmt.Fprintln(w)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-12s %s\n", label, replication.RedactURL(fmt.Sprintf(format, args...)))
	}
	if r.Endpoint != "" {
		renderDaemon(line, r, now)
	} else if !renderOffline(line, r, now) {
		return
	}
	renderServer(line, r.Status.Server, now)
	for i, f := range r.Failover {
		label := ""
		if i == 0 {
			label = "failover"
		}
		mark := "ok  "
		if !f.OK {
			mark = "WARN"
		}
		line(label, "%s %s: %s", mark, f.Subject, f.Message)
	}
}

// lineFunc prints one labelled line.
type lineFunc func(label, format string, args ...any)

// renderDaemon prints the running pgstream's picture from its endpoint.
func renderDaemon(line lineFunc, r *statusReport, now time.Time) {
	s := &r.Status
	line("from", "the operations endpoint at %s", r.Endpoint)
	line("slot", "%s, publication %s", s.Slot, s.Publication)
	conn := "connected"
	if !s.Connected {
		conn = "not connected"
	}
	conn += fmt.Sprintf(", %d reconnect(s)", s.Reconnects)
	if s.LastError != "" {
		conn += "; last error: " + s.LastError
	}
	line("replication", "%s", conn)
	pos := s.Positions
	line("positions", "durable %s (newest commit %s), confirmed %s, server WAL end %s", pos.Durable, pos.DurableCommit, pos.Confirmed, pos.ServerWALEnd)
	line("lag", "%s, %s behind; %s in flight", humanBytes(s.Lag.Bytes), seconds(s.Lag.Seconds), humanBytes(s.InFlightBytes))
	line("delivered", "transactions %d, events %d since it started", s.Transactions, s.Events)
	ready := "ready"
	if !r.Readiness.Ready {
		ready = "NOT READY"
	}
	line("readiness", "%s", ready)
	for _, c := range r.Readiness.Components {
		mark, reason := "ok  ", ""
		if !c.OK {
			mark = "FAIL"
		}
		if c.Reason != "" {
			reason = ": " + c.Reason
		}
		line("", "%s %s%s (since %s)", mark, c.Name, reason, ago(now, c.Since))
	}
	line("snapshot", "%s", snapshotLine(s.Snapshot))
}

// renderOffline prints the picture built from the server and the checkpoint. It reports false
// when PostgreSQL was out of reach: nothing more is known.
func renderOffline(line lineFunc, r *statusReport, now time.Time) bool {
	s := &r.Status
	line("from", "the server and the checkpoint; %s", r.Offline)
	line("source", "%s", r.Source)
	if r.Primary != "" {
		line("primary", "%s (written on while the source is a standby)", r.Primary)
	}
	if r.Reach != nil {
		return false
	}
	sys := r.Start.System
	line("system", "%s, timeline %d, database %s", sys.SystemID, sys.Timeline, sys.DBName)
	slot := r.Start.Slot
	state := "missing"
	switch {
	case slot.Exists && slot.Active:
		state = fmt.Sprintf("active (PID %d): a pgstream, or another consumer, streams from it", slot.ActivePID)
	case slot.Exists:
		state = "inactive: nothing streams from it"
	}
	line("slot", "%s, publication %s: %s", s.Slot, s.Publication, state)
	ck := "none"
	if r.Start.Found {
		cp := r.Start.Checkpoint
		ck = fmt.Sprintf("flush %s, commit %s, taken %s", cp.FlushLSN, cp.CommitLSN, ago(now, cp.UpdatedAt))
	}
	line("checkpoint", "%s: %s", r.Checkpoint, ck)
	line("start", "%s", startLine(r))
	pos := s.Positions
	switch {
	case r.Start.Found && slot.Exists:
		line("positions", "durable %s (newest commit %s), slot confirmed %s, server WAL end %s", pos.Durable, pos.DurableCommit, pos.Confirmed, pos.ServerWALEnd)
		line("lag", "%s (server WAL end − checkpoint flush)", humanBytes(s.Lag.Bytes))
	case r.Start.Found:
		line("positions", "durable %s (newest commit %s), no slot, server WAL end %s", pos.Durable, pos.DurableCommit, pos.ServerWALEnd)
		line("lag", "%s (server WAL end − checkpoint flush)", humanBytes(s.Lag.Bytes))
	case slot.Exists:
		line("positions", "no checkpoint, slot confirmed %s, server WAL end %s", pos.Confirmed, pos.ServerWALEnd)
		line("lag", "%s (server WAL end − slot confirmed)", humanBytes(s.Lag.Bytes))
	default:
		line("positions", "no checkpoint, no slot, server WAL end %s", pos.ServerWALEnd)
	}
	if !r.Start.Found || len(r.Start.Checkpoint.Snapshot) == 0 {
		line("snapshot", "none unfinished")
	}
	for i, t := range r.Start.Checkpoint.Snapshot {
		label := ""
		if i == 0 {
			label = "snapshot"
		}
		line(label, "%s unfinished: %d of %d chunks done", t.Name(), t.Chunks()-uint32(len(t.Pending())), t.Chunks())
	}
	return true
}

// renderServer prints the server's version and settings and the slot's WAL state, as last polled.
func renderServer(line lineFunc, srv inspect.SlotState, now time.Time) {
	switch {
	case srv.ServerVersion == "":
		line("server", "not polled yet")
		return
	case srv.Polled.IsZero():
		line("server", "PostgreSQL %s", srv.ServerVersion)
		if srv.WALStatus != "" {
			line("slot WAL", "wal_status %s", srv.WALStatus)
		}
		return
	}
	role := "primary"
	if srv.InRecovery {
		role = "standby"
	}
	idle := ""
	if srv.IdleReplicationSlotTimeout != "" {
		idle = ", idle_replication_slot_timeout " + srv.IdleReplicationSlotTimeout
	}
	line("server", "PostgreSQL %s, %s, wal_sender_timeout %s, max_slot_wal_keep_size %s%s", srv.ServerVersion, role, srv.WalSenderTimeout,
		srv.MaxSlotWALKeepSize, idle)
	if srv.Failover != nil {
		line("slot", "failover %t, synchronized_standby_slots %s", *srv.Failover, orNone(srv.SynchronizedStandbySlots, "(empty)"))
	}
	safe := "unlimited"
	if srv.SafeWALSize != nil {
		safe = humanBytes(float64(*srv.SafeWALSize))
	}
	line("slot WAL", "wal_status %s, safe_wal_size %s, retained %s (polled %s)", orNone(srv.WALStatus, "unknown"), safe,
		humanBytes(float64(srv.RetainedWAL)), ago(now, srv.Polled))
	if cause := srv.Invalidated(); cause != "" {
		line("invalidated", "%s", cause)
	}
	if srv.InactiveSince != nil {
		line("inactive", "since %s", ago(now, *srv.InactiveSince))
	}
}

// startLine says where a run would start, as reportStart does for check, or why it would refuse.
func startLine(r *statusReport) string {
	st := r.Start
	switch {
	case r.Refusal != nil || len(r.Problems) > 0:
		return "a run would refuse to start (see above)"
	case st.CreateSlot && st.Snapshot:
		return "a first run creates the slot, snapshots the published tables, then streams"
	case st.CreateSlot:
		return "a first run creates the slot and streams from its consistent point"
	case st.Found:
		return fmt.Sprintf("a run resumes from %s, skipping transactions committed at or before %s", st.Start.From, st.Start.SkipThrough)
	case st.Snapshot:
		return fmt.Sprintf("a run snapshots the published tables while streaming from the slot's position %s", st.Start.From)
	default:
		return fmt.Sprintf("a run streams from the slot's position %s", st.Start.From)
	}
}

func snapshotLine(pr pipeline.SnapshotProgress) string {
	if !pr.Active {
		if pr.TablesPending > 0 {
			return fmt.Sprintf("none running; %d table(s) unfinished", pr.TablesPending)
		}
		return "none running"
	}
	s := fmt.Sprintf("%d of %d chunks, %d rows", pr.ChunksDone, pr.Chunks, pr.Rows)
	if pr.RowsPerSec > 0 {
		s += fmt.Sprintf(", %.0f rows/s", pr.RowsPerSec)
	}
	if pr.ETA > 0 {
		s += ", ETA " + pr.ETA.String()
	}
	if pr.TablesPending > 0 {
		s += fmt.Sprintf("; %d table(s) unfinished", pr.TablesPending)
	}
	if pr.GuardSwitched {
		s += "; read while streaming since the slot's WAL was in danger"
	}
	return s
}

// writeStatusJSON prints the picture as JSON: from the endpoint, its /status object as served with
// its /readyz body under "readiness"; offline, the same shape of status (without readiness) with
// what was found under "offline".
func writeStatusJSON(w io.Writer, r *statusReport) error {
	var out []byte
	var err error
	if r.Endpoint != "" {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(r.rawStatus, &m); err != nil {
			return fmt.Errorf("decode %s/status: %w", r.Endpoint, err)
		}
		m["readiness"] = bytes.TrimSpace(r.rawReady)
		if r.Failover != nil {
			if m["failover"], err = json.Marshal(failoverJSON(r.Failover)); err != nil {
				return err
			}
		}
		out, err = json.MarshalIndent(m, "", "  ")
	} else {
		out, err = json.MarshalIndent(offlineJSON{Status: r.Status, Offline: offlineDetail(r), Failover: failoverJSON(r.Failover)}, "", "  ")
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", replication.RedactURL(string(out)))
	return err
}

// offlineJSON is the offline picture as --json prints it.
type offlineJSON struct {
	pipeline.Status
	Offline  offlineDetails `json:"offline"`
	Failover []findingJSON  `json:"failover,omitempty"`
}

// findingJSON is a failover finding as --json prints it, under "failover".
type findingJSON struct {
	OK      bool   `json:"ok"`
	Subject string `json:"subject"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

func failoverJSON(fs []inspect.Finding) []findingJSON {
	var out []findingJSON
	for _, f := range fs {
		out = append(out, findingJSON{f.OK, f.Subject, f.Message, f.Fix})
	}
	return out
}

type offlineDetails struct {
	Why             string            `json:"why"` // why the endpoint was not asked or did not answer
	Source          string            `json:"source"`
	Primary         string            `json:"primary,omitempty"`
	Error           string            `json:"error,omitempty"` // PostgreSQL unreachable, or what a run would refuse with
	Problems        []problemJSON     `json:"problems,omitempty"`
	SlotExists      bool              `json:"slot_exists"`
	SlotActive      bool              `json:"slot_active"`
	SlotActivePID   int32             `json:"slot_active_pid,omitempty"`
	Checkpoint      string            `json:"checkpoint"`
	CheckpointFound bool              `json:"checkpoint_found"`
	StartFrom       string            `json:"start_from,omitempty"` // where a run would resume
	SkipThrough     string            `json:"skip_through,omitempty"`
	Unfinished      []unfinishedTable `json:"snapshot_unfinished,omitempty"`
	PollError       string            `json:"poll_error,omitempty"`
}

type problemJSON struct {
	Check   string `json:"check"`
	Message string `json:"message"`
	Fix     string `json:"fix"`
}

type unfinishedTable struct {
	Table      string `json:"table"`
	ChunksDone uint32 `json:"chunks_done"`
	Chunks     uint32 `json:"chunks"`
}

func offlineDetail(r *statusReport) offlineDetails {
	st := r.Start
	d := offlineDetails{Why: r.Offline, Source: r.Source, Primary: r.Primary, Checkpoint: r.Checkpoint, CheckpointFound: st.Found,
		SlotExists: st.Slot.Exists, SlotActive: st.Slot.Active, SlotActivePID: st.Slot.ActivePID}
	switch {
	case r.Reach != nil:
		d.Error = r.Reach.Error()
	case r.Refusal != nil:
		d.Error = r.Refusal.Error()
	case !st.CreateSlot:
		d.StartFrom, d.SkipThrough = st.Start.From.String(), st.Start.SkipThrough.String()
	}
	for _, p := range r.Problems {
		d.Problems = append(d.Problems, problemJSON{p.Check, p.Message, p.Fix})
	}
	if st.Found {
		for _, t := range st.Checkpoint.Snapshot {
			d.Unfinished = append(d.Unfinished, unfinishedTable{t.Name(), t.Chunks() - uint32(len(t.Pending())), t.Chunks()})
		}
	}
	if r.PollErr != nil {
		d.PollError = r.PollErr.Error()
	}
	return d
}

// humanBytes is n bytes in binary units: "512 B", "1.5 MiB", "-2.0 GiB".
func humanBytes(n float64) string {
	const unit = 1024
	if n < 0 {
		return "-" + humanBytes(-n)
	}
	if n < unit {
		return fmt.Sprintf("%.0f B", n)
	}
	div, exp := float64(unit), 0
	for n/div >= unit && exp < 4 {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", n/div, "KMGTP"[exp])
}

func seconds(s float64) string { return fmt.Sprintf("%.1fs", s) }

// ago is t in UTC with its age: "2026-12-01 15:04:05Z, 12s ago"; "never" for the zero time.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return t.UTC().Format("2006-01-02 15:04:05Z") + ", " + d.Round(time.Second).String() + " ago"
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}
