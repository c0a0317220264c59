package pipeline

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/replication"
)

// opened is what open found and prepared: the replication connection, where streaming starts and
// the snapshot state the checkpoint holds. Run builds the pipeline's parts from it.
type opened struct {
	conn    *replication.Conn // the replication connection, identified; not streaming yet
	sys     replication.SystemInfo
	catalog *lazyCatalog // catalog queries on an ordinary connection
	st      StartState   // what Inspect found and decided

	start          checkpoint.Start
	pos            checkpoint.Position // the durable position at start
	exported       string              // snapshot exported by the slot's creation, "" when there is none
	statusInterval time.Duration       // source.status_interval, within the server's wal_sender_timeout
	// watermarks reports that watermarks can be written: the source is a primary, or a standby
	// with source.primary_url.
	watermarks bool

	// The unfinished table snapshots at start; the snapshot record holds them.
	tables []checkpoint.TableSnapshot
}

// ident returns the identity fields of the checkpoint.
func (o *opened) ident(slot string) checkpoint.Checkpoint {
	return checkpoint.Checkpoint{SystemID: o.sys.SystemID, Timeline: o.sys.Timeline, Database: o.sys.DBName, Slot: slot}
}

// close releases what open opened, when Run does not get to build the parts that own it.
func (o *opened) close() {
	if o == nil {
		return
	}
	closeReplication(o.conn)
	if o.catalog != nil {
		o.catalog.close()
	}
}

// open connects, inspects the server, its slot and the checkpoint (Inspect), refuses what a run
// must not start with, prepares the publication and the slot, and saves the checkpoint a first
// start begins with. On an error the returned value holds what must be closed.
func (p *Pipeline) open(ctx context.Context) (*opened, error) {
	conn, err := replication.Connect(ctx, p.src)
	if err != nil {
		return nil, err
	}
	o := &opened{conn: conn}
	if o.sys, err = conn.IdentifySystem(ctx); err != nil {
		return o, err
	}
	st, err := Inspect(ctx, conn, o.sys, p.store, p.cfg)
	if len(st.Problems) > 0 {
		return o, &PreflightError{Problems: st.Problems}
	}
	if err != nil {
		return o, err
	}
	o.st, o.start = st, st.Start
	if st.Found {
		o.sys = st.System
	}
	if err := p.prepare(ctx, o); err != nil {
		return o, err
	}
	o.catalog = newLazyCatalog(p.src)
	if st.CreateSlot {
		if err := p.createSlot(ctx, o); err != nil {
			return o, err
		}
	}
	published, err := p.planSnapshot(ctx, o)
	if err != nil {
		return o, err
	}
	o.pos = checkpoint.Position{CommitLSN: o.start.SkipThrough, EndLSN: o.start.From}
	if !st.Found || o.start.Fresh {
		cp := o.ident(p.src.Slot)
		cp.CommitLSN, cp.FlushLSN, cp.UpdatedAt, cp.Snapshot = o.pos.CommitLSN, o.pos.EndLSN, p.now(), o.tables
		cp.Published = published
		if err := p.store.Save(cp); err != nil {
			return o, fmt.Errorf("save checkpoint: %w", err)
		}
	}
	o.statusInterval = statusInterval(ctx, o.catalog, p.src.StatusInterval, p.log)
	p.log.Info("starting replication", zap.String("slot", p.src.Slot), zap.String("publication", p.src.Publication),
		zap.String("database", o.sys.DBName), zap.Stringer("from", o.start.From), zap.Stringer("skip_through", o.start.SkipThrough),
		zap.Bool("fresh", !st.Found), zap.Int("snapshot_tables", len(o.tables)))
	return o, nil
}

// prepare makes sure the publication exists (on the primary when the source is a standby) and
// that an existing slot is a failover slot when source.failover asks for one.
func (p *Pipeline) prepare(ctx context.Context, o *opened) error {
	conn, st := o.conn, &o.st
	primary, hasPrimary := p.src.Primary()
	o.watermarks = !st.Standby || hasPrimary
	if st.Standby {
		to := "nowhere: heartbeats, snapshots while streaming and new tables are off"
		if hasPrimary {
			to = replication.RedactURL(primary.URL)
		}
		p.log.Info("the source is a standby: decoding runs on it", zap.String("server_version", conn.PgConn().ParameterStatus("server_version")),
			zap.String("writes_go_to", to))
	}
	var err error
	if st.Standby && hasPrimary {
		err = ensurePublicationOnPrimary(ctx, conn, primary, p.log)
	} else {
		err = conn.EnsurePublication(ctx)
	}
	if err != nil {
		return err
	}
	if st.Slot.Exists && p.src.Failover && !st.Slot.Failover {
		if st.Slot, err = conn.EnsureFailover(ctx, st.Slot); err != nil {
			return err
		}
		p.log.Info("made the replication slot a failover slot", zap.String("slot", st.Slot.Name))
	}
	return nil
}

// createSlot creates the slot of a first start, which begins at the slot's consistent point and
// the checkpoint with it. The snapshot it exports when the tables are snapshotted is the database
// exactly as of that point.
func (p *Pipeline) createSlot(ctx context.Context, o *opened) error {
	stop := func() {}
	if o.st.Standby {
		stop = whileCreatingSlot(ctx, p.src, p.log)
	}
	var slot replication.SlotInfo
	var err error
	if o.st.Snapshot {
		slot, o.exported, err = o.conn.EnsureSlotExport(ctx)
	} else {
		slot, err = o.conn.EnsureSlot(ctx)
	}
	stop()
	if err != nil {
		return err
	}
	p.log.Info("created replication slot", zap.String("slot", slot.Name), zap.Stringer("consistent_point", slot.ConfirmedFlush),
		zap.Bool("failover", p.src.Failover))
	srv, err := ServerState(ctx, o.conn, o.sys, slot, o.st.Checkpoint, o.st.Found)
	if err != nil {
		return err
	}
	o.start, err = p.store.Reconcile(o.st.Checkpoint, o.st.Found, srv)
	return err
}

// planSnapshot loads the snapshot record the run starts with and returns the published tables it
// takes into account, as the checkpoint stores them: the checkpoint's, or on a first start (and
// with a checkpoint that predates the list of published tables) the tables published now, which
// are snapshotted (a first start) or streamed from here on.
func (p *Pipeline) planSnapshot(ctx context.Context, o *opened) ([]uint32, error) {
	cp, found := o.st.Checkpoint, o.st.Found
	if found {
		o.tables = cp.Snapshot
	}
	published, pubChanged := cp.Published, false
	if !found || cp.Published == nil {
		pub, err := publishedTables(ctx, o.catalog, p.src.Publication)
		if err != nil {
			return nil, err
		}
		published = make([]uint32, len(pub))
		for i, t := range pub {
			published[i] = t.OID
		}
		pubChanged = found
		if o.st.Snapshot {
			// The plan is saved before the first row is read: a crash from here on resumes it.
			o.tables = snapshot.Plan(pub, o.start.From, uint32(p.cfg.Snapshot.ChunkPages))
		}
	}
	return p.snap.state.load(o.tables, published, pubChanged), nil
}
