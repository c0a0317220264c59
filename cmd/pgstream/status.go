package main

import (
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
	"github.com/pgstream/pgstream/internal/inspect"
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
	Refusal    error             // what a run would stop with now (Inspect's error)
	Problems   []inspect.Problem // preflight findings a run refuses to start on
	PollErr    error             // the slot's WAL state could not be read

	// Failover is what failover needs, as the servers of source.url show it; nil unless
	// source.failover is on.
	Failover []inspect.Finding
}

// gatherStatus asks the operations endpoint when one is configured, and builds the picture from
// the server and the checkpoint when there is none or it does not answer.
func gatherStatus(ctx context.Context, cfg *Config) *statusReport {
	r := gatherPicture(ctx, cfg)
	if cfg.Source.Failover && r.Reach == nil {
		r.Failover = inspect.Failover(ctx, cfg.Source.Config).Findings()
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
// run would find at start-up (pipeline.Inspect) and the slot's WAL state (inspect.PollSlot).
func inspectOffline(ctx context.Context, cfg *Config, r *statusReport) {
	src := cfg.Source.WithDefaults()
	r.Source, r.Checkpoint = replication.RedactURL(src.URL), cfg.Checkpoint.where()
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
	opened, err := cfg.Checkpoint.open(nil)
	if err != nil {
		r.Refusal = err
		return
	}
	st, err := pipeline.Inspect(ctx, conn, sys, readOnlyStore{opened}, cfg.Pipeline)
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
	polled, err := inspect.PollSlot(ctx, sql, src.Slot)
	if err != nil {
		r.PollErr = err
		return
	}
	s.Server = polled
}

// readOnlyStore is the checkpoint store pgstream status hands Inspect: it refuses to save, so that
// status changes nothing whatever Inspect may become.
type readOnlyStore struct {
	checkpoint.Store
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
func idleDeadline(srv inspect.SlotState) string {
	if srv.IdleTimeout() <= 0 || srv.InactiveSince == nil {
		return ""
	}
	return fmt.Sprintf("; idle_replication_slot_timeout is %s: the server invalidates the slot at its first checkpoint after %s",
		srv.IdleReplicationSlotTimeout, srv.InactiveSince.Add(srv.IdleTimeout()).UTC().Format("2006-01-02 15:04:05Z"))
}
