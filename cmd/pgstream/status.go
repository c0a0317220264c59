package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/spf13/pflag"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/httpapi"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/replication"
)

// Exit codes of pgstream status, for cron jobs and probes.
const (
	statusHealthy  = 0 // the daemon is ready; offline: the slot and the checkpoint are fine
	statusDegraded = 1 // it works, but needs attention (not ready, nothing streams, the slot at risk, lag)
	statusBroken   = 2 // it cannot work until someone acts (PostgreSQL unreachable, a run would refuse, slot lost)
)

var statusNames = [...]string{"healthy", "degraded", "broken"}

// Defaults of the lag limits past which status reports degraded.
const (
	defaultMaxLagBytes = 1 << 30 // 1 GiB of WAL behind the server
	defaultMaxLag      = 5 * time.Minute
)

// endpointTimeout bounds the requests to the operations endpoint, together.
const endpointTimeout = 3 * time.Second

// lagLimits are the lags past which status reports degraded; zero disables a limit.
type lagLimits struct {
	Bytes   int64
	Seconds time.Duration // only a running daemon knows the lag in time
}

// runStatus prints where the pgstream of a configuration stands: the daemon's own picture from its
// operations endpoint when it answers, otherwise one built from the server and the checkpoint
// without changing anything. The exit code says healthy, degraded or broken.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("status", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	addConfigFlags(fs)
	asJSON := fs.Bool("json", false, "print the picture as JSON (the daemon's /status with its /readyz under readiness)")
	maxLagBytes := fs.Int64("max-lag-bytes", defaultMaxLagBytes, "WAL bytes behind the server past which the state is degraded (0: no limit)")
	maxLag := fs.Duration("max-lag", defaultMaxLag, "age of the oldest unacknowledged transaction past which the state is degraded (0: no limit)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(fs)
	if err != nil {
		fmt.Fprintf(stderr, "pgstream: %v\n", err)
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	r := gatherStatus(ctx, cfg)
	v := classify(r, lagLimits{Bytes: *maxLagBytes, Seconds: *maxLag})
	if *asJSON {
		if err := writeStatusJSON(stdout, r); err != nil {
			fmt.Fprintf(stderr, "pgstream status: %v\n", err)
			return statusBroken
		}
		for _, why := range v.Reasons {
			fmt.Fprintf(stderr, "pgstream status: %s: %s\n", statusNames[v.Code], why)
		}
		return v.Code
	}
	renderStatus(stdout, r, v, time.Now())
	return v.Code
}

// statusReport is the picture pgstream status prints: from the operations endpoint (Endpoint set),
// or built from the server and the checkpoint. Status is filled in both cases, as far as it is known.
type statusReport struct {
	Status pipeline.Status

	// From the operations endpoint.
	Endpoint  string // its base URL; "" when the picture was built offline
	Readiness httpapi.Readiness
	rawStatus []byte // the bodies as served, for --json
	rawReady  []byte

	// Built offline.
	Offline    string // why the endpoint was not asked or did not serve the picture
	Source     string // source.url, redacted
	Primary    string // source.primary_url, redacted; "" when not set
	Checkpoint string // checkpoint.path
	Reach      error  // PostgreSQL could not be reached or identified: little else is known
	Start      pipeline.StartState
	Refusal    error                 // what a run would stop with now (Inspect's error)
	Problems   []replication.Problem // preflight findings a run refuses to start on
	PollErr    error                 // the slot's WAL state could not be read

	// Failover is what failover needs, as the servers of source.url show it; nil unless
	// source.failover is on.
	Failover []replication.Finding
}

// gatherStatus asks the operations endpoint when one is configured, and builds the picture from
// the server and the checkpoint when there is none or it does not answer.
func gatherStatus(ctx context.Context, cfg *Config) *statusReport {
	r := gatherPicture(ctx, cfg)
	if cfg.Source.Failover && r.Reach == nil {
		r.Failover = replication.InspectFailover(ctx, cfg.Source.Config).Findings()
	}
	return r
}

// gatherPicture is gatherStatus without failover.
func gatherPicture(ctx context.Context, cfg *Config) *statusReport {
	why := "http.listen is not set"
	if cfg.HTTP.Listen != "" {
		base, err := endpointURL(cfg.HTTP.Listen)
		if err == nil {
			ectx, cancel := context.WithTimeout(ctx, endpointTimeout)
			var r *statusReport
			r, err = fetchEndpoint(ectx, base, cfg.Source.WithDefaults().Slot)
			cancel()
			if err == nil {
				return r
			}
		}
		why = fmt.Sprintf("the operations endpoint (http.listen %s) did not answer: %v", cfg.HTTP.Listen, err)
	}
	r := &statusReport{Offline: why}
	inspectOffline(ctx, cfg, r)
	return r
}

// endpointURL is the base URL of the operations endpoint listening on listen. An address on every
// interface (empty host, 0.0.0.0, ::) is reached on the loopback.
func endpointURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("http.listen %q: want host:port", listen)
	}
	if host == "" {
		host = "127.0.0.1"
	} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// fetchEndpoint reads /status and /readyz from the endpoint at base. An endpoint that serves
// another slot than slot belongs to another pgstream, and is an error here.
func fetchEndpoint(ctx context.Context, base, slot string) (*statusReport, error) {
	// The endpoint is reached directly: a proxy from the environment has no business in between.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	r := &statusReport{Endpoint: base}
	var err error
	if r.rawStatus, err = get(ctx, client, base+"/status", http.StatusOK); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(r.rawStatus, &r.Status); err != nil || r.Status.Slot == "" {
		return nil, fmt.Errorf("%s/status is not pgstream's status (is another program listening there?)", base)
	}
	if r.Status.Slot != slot {
		return nil, fmt.Errorf("%s is the endpoint of the pgstream streaming slot %s, not %s", base, r.Status.Slot, slot)
	}
	if r.rawReady, err = get(ctx, client, base+"/readyz", http.StatusOK, http.StatusServiceUnavailable); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(r.rawReady, &r.Readiness); err != nil {
		return nil, fmt.Errorf("%s/readyz is not pgstream's readiness: %v", base, err)
	}
	return r, nil
}

// get returns the body of a GET answered with one of the codes.
func get(ctx context.Context, c *http.Client, url string, codes ...int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	for _, code := range codes {
		if resp.StatusCode == code {
			return body, nil
		}
	}
	return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
}

// inspectOffline builds the picture from the server and the checkpoint, changing nothing: what a
// run would find at start-up (pipeline.Inspect) and the slot's WAL state (pipeline.PollSlot).
func inspectOffline(ctx context.Context, cfg *Config, r *statusReport) {
	src := cfg.Source.WithDefaults()
	r.Source, r.Checkpoint = replication.RedactURL(src.URL), cfg.Checkpoint.Path
	if src.PrimaryURL != "" {
		r.Primary = replication.RedactURL(src.PrimaryURL)
	}
	r.Status.Slot, r.Status.Publication = src.Slot, src.Publication
	conn, err := replication.Connect(ctx, src)
	if err != nil {
		r.Reach = err
		return
	}
	defer conn.Close(context.Background())
	sys, err := conn.IdentifySystem(ctx)
	if err != nil {
		r.Reach = err
		return
	}
	// Inspect reads the server's WAL end again after the checkpoint, so a pgstream streaming
	// meanwhile does not look like a database gone back in time.
	store := readOnlyStore{checkpoint.NewFileStore(cfg.Checkpoint.Path, checkpoint.OSFS())}
	st, err := pipeline.Inspect(ctx, conn, sys, store, cfg.Pipeline)
	r.Start, r.Refusal = st, err
	var refusal *replication.Error
	slotRefused := errors.As(err, &refusal) && refusal.Check == "slot"
	for _, p := range st.Problems {
		// Preflight's slot findings are the slot's being active (what a running pgstream looks
		// like, not a problem here) and what CheckSlot finds: when Inspect accepted the slot, the
		// former is the only one; when CheckSlot refused it, the refusal says it already.
		if p.Check == "slot" && (slotRefused || err == nil && st.Slot.Exists && st.Slot.Active) {
			continue
		}
		r.Problems = append(r.Problems, p)
	}

	s := &r.Status
	walEnd := r.Start.System.XLogPos
	s.Positions.ServerWALEnd = walEnd.String()
	s.Positions.Confirmed = st.Slot.ConfirmedFlush.String()
	durable := st.Slot.ConfirmedFlush // without a checkpoint, the slot is where a run starts
	if st.Found {
		durable = st.Checkpoint.FlushLSN
		s.Positions.DurableCommit = st.Checkpoint.CommitLSN.String()
	}
	s.Positions.Durable = durable.String()
	if (st.Found || st.Slot.Exists) && walEnd > durable {
		s.Lag.Bytes = float64(walEnd - durable)
	}
	if st.Found {
		s.Snapshot.TablesPending = len(st.Checkpoint.Snapshot)
	}
	s.Server.ServerVersion = conn.PgConn().ParameterStatus("server_version")
	if !st.Slot.Exists {
		return
	}
	s.Server.WALStatus = st.Slot.WALStatus
	sql, err := replication.NewSQLConn(ctx, src)
	if err != nil {
		r.PollErr = err
		return
	}
	defer sql.Close(context.Background())
	polled, err := pipeline.PollSlot(ctx, sql, src.Slot)
	if err != nil {
		r.PollErr = err
		return
	}
	s.Server = polled
}

// readOnlyStore is the checkpoint store pgstream status hands Inspect: it refuses to save, so that
// status changes nothing whatever Inspect may become.
type readOnlyStore struct {
	*checkpoint.FileStore
}

func (readOnlyStore) Save(checkpoint.Checkpoint) error {
	return errors.New("pgstream status changes nothing: it does not save the checkpoint")
}

// verdict is pgstream status's conclusion: an exit code and why it is not 0.
type verdict struct {
	Code    int
	Reasons []string
}

// add raises the code to at least code, giving why (none when why is "").
func (v *verdict) add(code int, why string) {
	v.Code = max(v.Code, code)
	if why != "" {
		v.Reasons = append(v.Reasons, replication.RedactURL(why))
	}
}

// classify decides healthy, degraded or broken from the picture.
func classify(r *statusReport, lim lagLimits) verdict {
	var v verdict
	s := &r.Status
	walStatusSaid := false // the slot's state is already among the reasons
	if r.Endpoint != "" {
		if !r.Readiness.Ready {
			if len(r.Readiness.Components) == 0 {
				v.add(statusDegraded, "not ready: no component has reported yet (pgstream is starting)")
			}
			for _, c := range r.Readiness.Components {
				if !c.OK {
					v.add(statusDegraded, fmt.Sprintf("%s not ready: %s", c.Name, orNone(c.Reason, "no reason given")))
					walStatusSaid = walStatusSaid || c.Name == pipeline.ComponentSlot
				}
			}
		}
	} else {
		switch {
		case r.Reach != nil:
			v.add(statusBroken, "cannot reach PostgreSQL: "+r.Reach.Error())
			return v
		case r.Refusal != nil:
			v.add(statusBroken, "a run would refuse to start: "+r.Refusal.Error())
			walStatusSaid = errors.Is(r.Refusal, replication.ErrSlotLost)
		}
		for _, p := range r.Problems {
			v.add(statusBroken, fmt.Sprintf("a run would refuse to start: %s: %s; fix: %s", p.Check, p.Message, p.Fix))
		}
		slot := r.Start.Slot
		switch {
		case r.Refusal != nil:
		case !slot.Exists:
			v.add(statusDegraded, fmt.Sprintf("nothing streams: slot %s does not exist yet; pgstream run creates it", s.Slot))
		case !slot.Active:
			v.add(statusDegraded, fmt.Sprintf("nothing streams: slot %s is inactive, no pgstream is connected to it; start pgstream run%s", s.Slot, idleDeadline(s.Server)))
		}
		if r.PollErr != nil {
			v.add(statusDegraded, "cannot read the slot's WAL state: "+r.PollErr.Error())
		}
	}
	why := func(msg string) string {
		if walStatusSaid {
			return ""
		}
		return msg
	}
	switch cause := s.Server.Invalidated(); {
	case cause != "":
		what, avoid := replication.Invalidation(cause)
		v.add(statusBroken, why(fmt.Sprintf("slot %s is lost (invalidated: %s): %s; "+
			"drop the slot and the checkpoint, then start again with snapshot.mode initial; to avoid it: %s", s.Slot, cause, what, avoid)))
	case s.Server.WALStatus == "unreserved":
		v.add(statusDegraded, why(fmt.Sprintf("slot %s: wal_status unreserved: the server removes WAL the slot needs at its next checkpoint "+
			"unless pgstream catches up", s.Slot)))
	case s.Server.WALStatus == "extended":
		v.add(statusDegraded, why(fmt.Sprintf("slot %s: wal_status extended: it holds more than max_wal_size of WAL, kept only within "+
			"max_slot_wal_keep_size; pgstream is falling behind", s.Slot)))
	}
	for _, f := range r.Failover {
		if !f.OK {
			v.add(statusDegraded, f.Subject+": "+f.Message)
		}
	}
	if lim.Bytes > 0 && s.Lag.Bytes > float64(lim.Bytes) {
		v.add(statusDegraded, fmt.Sprintf("lag %s is over --max-lag-bytes %s", humanBytes(s.Lag.Bytes), humanBytes(float64(lim.Bytes))))
	}
	if lim.Seconds > 0 && s.Lag.Seconds > lim.Seconds.Seconds() {
		v.add(statusDegraded, fmt.Sprintf("lag %s is over --max-lag %s", seconds(s.Lag.Seconds), lim.Seconds))
	}
	return v
}

// idleDeadline says, for an inactive slot on a server with idle_replication_slot_timeout set, when
// the server invalidates it; "" otherwise.
func idleDeadline(srv pipeline.SlotState) string {
	if srv.IdleTimeout() <= 0 || srv.InactiveSince == nil {
		return ""
	}
	return fmt.Sprintf("; idle_replication_slot_timeout is %s: the server invalidates the slot at its first checkpoint after %s",
		srv.IdleReplicationSlotTimeout, srv.InactiveSince.Add(srv.IdleTimeout()).UTC().Format("2006-01-02 15:04:05Z"))
}

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
func renderServer(line lineFunc, srv pipeline.SlotState, now time.Time) {
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

func failoverJSON(fs []replication.Finding) []findingJSON {
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
