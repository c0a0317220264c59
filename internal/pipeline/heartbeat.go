package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/walparse"
)

// HeartbeatPrefix marks pgstream's heartbeat messages (pg_logical_emit_message(true,
// 'pgstream.heartbeat', …)); they reach the sinks only with source.heartbeat_to_sinks.
const HeartbeatPrefix = "pgstream.heartbeat"

// ComponentHeartbeat is the readiness component of heartbeats.
const ComponentHeartbeat = "heartbeat"

// heartbeat is the JSON content of a heartbeat message.
type heartbeat struct {
	Slot string `json:"slot"`
	Run  string `json:"run"`
	ID   uint64 `json:"id"`
}

// heartbeater writes a heartbeat when no transaction has come through the slot for the configured
// interval, on an ordinary connection of its own, and checks that it comes back through the slot:
// that proves the whole path (server, walsender, slot, publication, pgstream) end to end. A
// heartbeat that does not come back within the bound makes the component not ready.
type heartbeater struct {
	p     *Pipeline
	cfg   HeartbeatConfig
	bound time.Duration // how long a heartbeat may take to come back

	mu      sync.Mutex // guards the fields below
	nextID  uint64
	pending *sentBeat // the heartbeat awaited; nil when none
	failed  bool      // the pending one has overrun bound (logged once)
}

type sentBeat struct {
	id  uint64
	at  time.Time
	txs uint64 // transactions handed over when it was written (heartbeat_query: any later one returns it)
}

func newHeartbeater(p *Pipeline) *heartbeater {
	cfg := p.cfg.Heartbeat
	return &heartbeater{p: p, cfg: cfg, bound: max(cfg.Interval, 30*time.Second)}
}

// check refuses heartbeats the role may not write, naming the grant or the option. conn is an
// ordinary connection to the source; on a standby the privilege is checked on the primary, where
// heartbeats are written.
func (h *heartbeater) check(ctx context.Context, conn *pgconn.PgConn) error {
	w := newWriteTarget(h.p.src)
	defer w.close()
	target, _, err := w.pick(ctx, conn)
	if err != nil {
		return fmt.Errorf("check heartbeats: %w", err)
	}
	// PostgreSQL 17 added a fourth parameter (flush, with a default): the function is looked up by
	// whichever signature the server has.
	v, err := replication.Value(ctx, target, "SELECT "+
		"coalesce(has_function_privilege(f::oid, 'EXECUTE'), false)::text || ' ' || coalesce(f::text, '-') || ' ' || current_user "+
		"FROM coalesce(to_regprocedure('pg_catalog.pg_logical_emit_message(boolean,text,text,boolean)'), "+
		"to_regprocedure('pg_catalog.pg_logical_emit_message(boolean,text,text)')) f")
	if err != nil {
		return fmt.Errorf("check heartbeats: %w", err)
	}
	allowedStr, rest, _ := strings.Cut(v, " ")
	fn, user, _ := strings.Cut(rest, " ") // the user name last: it may hold spaces
	allowed, err := strconv.ParseBool(allowedStr)
	if err != nil || user == "" || fn == "" {
		return fmt.Errorf("check heartbeats: unexpected answer %q", v)
	}
	if !strings.HasPrefix(fn, "pg_catalog.") {
		fn = "pg_catalog." + fn
	}
	if h.cfg.Query == "" && !allowed {
		return fmt.Errorf("source.heartbeat_interval: role %s may not call pg_logical_emit_message: "+
			"GRANT EXECUTE ON FUNCTION %s TO %s, set source.heartbeat_query, "+
			"or turn heartbeats off with a negative source.heartbeat_interval", user, fn, replication.QuoteIdent(user))
	}
	return nil
}

// run writes heartbeats until ctx ends: on the source while it is a primary, on source.primary_url
// while it is a standby.
func (h *heartbeater) run(ctx context.Context) {
	p := h.p
	var conn *pgconn.PgConn
	target := newWriteTarget(p.src)
	defer func() { closeSQL(conn); target.close() }()
	tick := min(max(h.cfg.Interval/10, 100*time.Millisecond), 5*time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	p.health.Set(ComponentHeartbeat, true, "")
	lastTxs, quietSince := p.stats.txs.Load(), p.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := p.now()
		if txs := p.stats.txs.Load(); txs != lastTxs {
			lastTxs, quietSince = txs, now
			h.returnedBy(txs)
		}
		if h.overdue(now) || now.Sub(quietSince) < h.cfg.Interval || h.waiting() {
			continue
		}
		if conn == nil || conn.IsClosed() {
			c, err := replication.NewSQLConn(ctx, p.src)
			if err != nil {
				if ctx.Err() == nil {
					p.log.Warn("heartbeat: connect failed", zap.Error(err))
				}
				continue
			}
			conn = c
		}
		w, _, err := target.pick(ctx, conn)
		if err == nil {
			err = h.write(ctx, w, now, lastTxs)
		}
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("heartbeat: write failed", zap.Error(err))
			}
			continue
		}
		quietSince = now
	}
}

// write writes one heartbeat.
func (h *heartbeater) write(ctx context.Context, conn *pgconn.PgConn, now time.Time, txs uint64) error {
	// Pending before it is written: it can come back through the slot before the write returns.
	h.mu.Lock()
	h.nextID++
	id := h.nextID
	h.pending, h.failed = &sentBeat{id: id, at: now, txs: txs}, false
	h.mu.Unlock()
	var err error
	if h.cfg.Query != "" {
		_, err = replication.Value(ctx, conn, h.cfg.Query)
	} else {
		content, _ := json.Marshal(heartbeat{Slot: h.p.src.Slot, Run: h.p.sn.runID(), ID: id})
		_, err = replication.Value(ctx, conn, "SELECT pg_logical_emit_message(true, $1, $2)::text", HeartbeatPrefix, string(content))
	}
	if err != nil {
		h.mu.Lock()
		if h.pending != nil && h.pending.id == id {
			h.pending = nil
		}
		h.mu.Unlock()
		return err
	}
	return nil
}

func (h *heartbeater) waiting() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pending != nil
}

// overdue reports a pending heartbeat older than bound, making the component not ready.
func (h *heartbeater) overdue(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending == nil || now.Sub(h.pending.at) <= h.bound {
		return false
	}
	if !h.failed {
		h.failed = true
		h.p.log.Warn("heartbeat did not come back through the slot", zap.Time("written", h.pending.at), zap.Duration("bound", h.bound))
	}
	h.p.health.Set(ComponentHeartbeat, false, fmt.Sprintf("the heartbeat written at %s has not come back through the slot within %s",
		h.pending.at.UTC().Format(time.RFC3339), h.bound))
	return true
}

// received handles a heartbeat message that came through the slot (the replication goroutine).
func (h *heartbeater) received(m *walparse.LogicalMessage) {
	var hb heartbeat
	if json.Unmarshal(m.Content, &hb) != nil || hb.Slot != h.p.src.Slot || hb.Run != h.p.sn.runID() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending != nil && h.pending.id == hb.ID {
		h.back()
	}
}

// returnedBy counts a transaction handed over after a heartbeat_query heartbeat as its return.
func (h *heartbeater) returnedBy(txs uint64) {
	if h.cfg.Query == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending != nil && txs > h.pending.txs {
		h.back()
	}
}

// back records the pending heartbeat's return; h.mu is held.
func (h *heartbeater) back() {
	rtt := h.p.now().Sub(h.pending.at)
	h.p.metrics.HeartbeatRoundTrip(rtt.Seconds())
	if h.failed {
		h.p.log.Info("heartbeat came back", zap.Duration("round_trip", rtt))
	}
	h.pending, h.failed = nil, false
	h.p.health.Set(ComponentHeartbeat, true, "")
}
