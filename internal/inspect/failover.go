package inspect

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
)

// FailoverReport is what a failover of the source needs, as the servers source.url names show it:
// on the primary, synchronized_standby_slots, its physical slots and whether pgstream's slot is a
// failover slot; on each standby, the settings of slot synchronization and its copy of pgstream's
// slot. Failover fills it; Findings says what is ready and what is missing.
type FailoverReport struct {
	Slot  string   // pgstream's slot
	Hosts []string // the servers source.url names, in order
	// Primary is the first host found not in recovery; nil when none was.
	Primary *PrimaryFailover
	// Others lists hosts not in recovery after the first: more than one primary.
	Others   []string
	Standbys []StandbyFailover
	// Unreached lists the hosts that could not be connected to or read.
	Unreached []HostError
}

// HostError is a server of source.url that could not be inspected, and why.
type HostError struct {
	Addr string
	Err  error
}

// PrimaryFailover is the primary's side of failover.
type PrimaryFailover struct {
	Addr       string
	VersionNum int // server_version_num
	// SynchronizedStandbySlots lists the physical slots whose standbys must have received WAL before
	// a walsender of a failover slot sends it (synchronized_standby_slots, PostgreSQL 17+).
	SynchronizedStandbySlots []string
	// PhysicalSlots are the primary's physical slots by name, each true while a standby uses it.
	PhysicalSlots map[string]bool
	Slot          FailoverSlot // pgstream's slot
}

// StandbyFailover is one standby's side of failover.
type StandbyFailover struct {
	Addr                 string
	VersionNum           int
	SyncReplicationSlots bool   // sync_replication_slots (PostgreSQL 17+)
	HotStandbyFeedback   bool   // hot_standby_feedback
	PrimarySlotName      string // primary_slot_name: its physical slot on the primary
	WALLevel             string
	Slot                 FailoverSlot // its copy of pgstream's slot
}

// FailoverSlot is a row of pg_replication_slots as failover sees it.
type FailoverSlot struct {
	Exists    bool
	Failover  bool // the failover column
	Synced    bool // the synced column: a copy kept by the standby's slot sync worker
	Temporary bool // the temporary column: a synced copy stays temporary until it is safe to use
	// ConfirmedFlush is the slot's confirmed_flush_lsn.
	ConfirmedFlush lsn.LSN
	// Invalidation is the invalidation_reason ("" while the slot is usable).
	Invalidation string
}

// Ready reports whether a standby's copy of the slot can be streamed from once the standby is
// promoted: synchronized from the primary, persistent and not invalidated.
func (s FailoverSlot) Ready() bool {
	return s.Exists && s.Synced && !s.Temporary && s.Invalidation == ""
}

// Failover connects to every server source.url names, one by one and whatever
// target_session_attrs says, and reads what failover needs there. It changes nothing. A server
// that cannot be reached or read is listed in Unreached.
func Failover(ctx context.Context, cfg replication.Config) FailoverReport {
	cfg = cfg.WithDefaults()
	r := FailoverReport{Slot: cfg.Slot}
	hosts, err := cfg.Hosts()
	if err != nil {
		r.Unreached = append(r.Unreached, HostError{Addr: "source.url", Err: err})
		return r
	}
	r.Hosts = hosts
	for _, addr := range hosts {
		if err := r.inspectHost(ctx, cfg, addr); err != nil {
			r.Unreached = append(r.Unreached, HostError{Addr: addr, Err: err})
		}
	}
	return r
}

// settingsSQL reads what failover needs of any server; a setting that the server does not have
// (before PostgreSQL 17) reads as "".
const settingsSQL = `SELECT current_setting('server_version_num'), pg_is_in_recovery()::text,
  coalesce(current_setting('synchronized_standby_slots', true), ''), coalesce(current_setting('sync_replication_slots', true), ''),
  current_setting('hot_standby_feedback'), current_setting('primary_slot_name'), current_setting('wal_level')`

// slotSQL reads a slot; the columns of PostgreSQL 17 (failover, synced, invalidation_reason) are
// read from the row's JSON, where they are missing before.
const slotSQL = `SELECT coalesce(to_jsonb(s) ->> 'failover', ''), coalesce(to_jsonb(s) ->> 'synced', ''), temporary::text,
  coalesce(confirmed_flush_lsn::text, ''), coalesce(to_jsonb(s) ->> 'invalidation_reason', '')
FROM pg_replication_slots s WHERE slot_name = $1`

func (r *FailoverReport) inspectHost(ctx context.Context, cfg replication.Config, addr string) error {
	pg, err := replication.ConnectHost(ctx, cfg, addr)
	if err != nil {
		return err
	}
	defer pg.Close(context.Background())
	rows, err := pgsql.Query(ctx, pg, settingsSQL)
	if err != nil {
		return fmt.Errorf("read settings: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) != 7 {
		return fmt.Errorf("read settings: %w", replication.ErrProtocol)
	}
	set := rows[0]
	version, _ := strconv.Atoi(set[0])
	slot, err := readFailoverSlot(ctx, pg, cfg.Slot)
	if err != nil {
		return err
	}
	if set[1] == "true" {
		r.Standbys = append(r.Standbys, StandbyFailover{Addr: addr, VersionNum: version, SyncReplicationSlots: set[3] == "on",
			HotStandbyFeedback: set[4] == "on", PrimarySlotName: set[5], WALLevel: set[6], Slot: slot})
		return nil
	}
	if r.Primary != nil {
		r.Others = append(r.Others, addr)
		return nil
	}
	p := &PrimaryFailover{Addr: addr, VersionNum: version, Slot: slot, PhysicalSlots: map[string]bool{}}
	for _, s := range strings.Split(set[2], ",") {
		if s = strings.TrimSpace(s); s != "" {
			p.SynchronizedStandbySlots = append(p.SynchronizedStandbySlots, s)
		}
	}
	phys, err := pgsql.Query(ctx, pg, "SELECT slot_name, active::text FROM pg_replication_slots WHERE slot_type = 'physical'")
	if err != nil {
		return fmt.Errorf("read physical slots: %w", err)
	}
	for _, row := range phys {
		p.PhysicalSlots[row[0]] = row[1] == "true"
	}
	r.Primary = p
	return nil
}

func readFailoverSlot(ctx context.Context, pg *pgconn.PgConn, slot string) (FailoverSlot, error) {
	rows, err := pgsql.Query(ctx, pg, slotSQL, slot)
	if err != nil {
		return FailoverSlot{}, fmt.Errorf("read slot %s: %w", slot, err)
	}
	if len(rows) == 0 {
		return FailoverSlot{}, nil
	}
	row := rows[0]
	s := FailoverSlot{Exists: true, Failover: row[0] == "true", Synced: row[1] == "true", Temporary: row[2] == "true", Invalidation: row[4]}
	if row[3] != "" {
		if s.ConfirmedFlush, err = lsn.Parse(row[3]); err != nil {
			return FailoverSlot{}, fmt.Errorf("read slot %s: confirmed_flush_lsn: %w", slot, err)
		}
	}
	return s, nil
}

// Finding is one line of what failover needs: ready (OK) or missing, with the fix.
type Finding struct {
	OK      bool
	Subject string
	Message string
	Fix     string // "" when OK
}

// Findings says what of failover is ready and what is missing, primary first, then each standby.
// A server older than PostgreSQL 17 gives one finding: failover slots do not exist there.
func (r FailoverReport) Findings() []Finding {
	var out []Finding
	ok := func(subject, format string, args ...any) {
		out = append(out, Finding{OK: true, Subject: subject, Message: fmt.Sprintf(format, args...)})
	}
	warn := func(subject, fix, format string, args ...any) {
		out = append(out, Finding{Subject: subject, Message: fmt.Sprintf(format, args...), Fix: fix})
	}
	for _, u := range r.Unreached {
		warn("failover: "+u.Addr, "check that the server is up and that source.url's credentials work on it",
			"cannot be inspected: %v", u.Err)
	}
	p := r.Primary
	if p == nil {
		warn("failover: primary", "name the primary in source.url",
			"none of the servers of source.url (%s) could be inspected as the primary", strings.Join(r.Hosts, ", "))
		return out
	}
	if p.VersionNum < replication.FailoverMinVersion {
		warn("failover: primary "+p.Addr, "upgrade to PostgreSQL 17 or newer, or set source.failover: false",
			"PostgreSQL %d has no failover slots (server_version_num %d, at least %d needed)", p.VersionNum/10000, p.VersionNum, replication.FailoverMinVersion)
		return out
	}
	subject := "failover: primary " + p.Addr
	switch {
	case !p.Slot.Exists:
		ok(subject, "slot %s does not exist yet; the first run creates it as a failover slot", r.Slot)
	case !p.Slot.Failover:
		warn(subject, "pgstream run turns it on at start-up (ALTER_REPLICATION_SLOT "+r.Slot+" (FAILOVER true))",
			"slot %s is not a failover slot (failover false): no standby keeps a copy of it", r.Slot)
	default:
		ok(subject, "slot %s is a failover slot", r.Slot)
	}

	standbySlots := map[string]bool{}
	for _, s := range p.SynchronizedStandbySlots {
		standbySlots[s] = true
	}
	var wanted []string // the physical slots of the standbys inspected
	for _, s := range r.Standbys {
		if s.PrimarySlotName != "" {
			wanted = append(wanted, s.PrimarySlotName)
		}
	}
	setFix := "on the primary: ALTER SYSTEM SET synchronized_standby_slots = '<physical slot of each standby that may be promoted>'; SELECT pg_reload_conf()"
	if len(wanted) > 0 {
		setFix = "on the primary: ALTER SYSTEM SET synchronized_standby_slots = '" + strings.Join(wanted, ", ") + "'; SELECT pg_reload_conf()"
	}
	if len(p.SynchronizedStandbySlots) == 0 {
		warn(subject, setFix, "synchronized_standby_slots is empty: pgstream may receive changes before any standby has them, so after a "+
			"failover the promoted standby's copy of slot %s can be behind what pgstream already received; pgstream then refuses to resume "+
			"(the database went back in time) rather than skip what the new primary lacks", r.Slot)
	} else {
		missing := false
		for _, s := range p.SynchronizedStandbySlots {
			if _, exists := p.PhysicalSlots[s]; !exists {
				missing = true
				warn(subject, "create the standby's slot (SELECT pg_create_physical_replication_slot('"+s+"')) or remove it from synchronized_standby_slots",
					"synchronized_standby_slots names %s, which is not a physical slot on the primary: the walsender of slot %s waits for it and sends nothing", s, r.Slot)
			}
		}
		if !missing {
			ok(subject, "synchronized_standby_slots = %s: pgstream receives changes only once those standbys have them", strings.Join(p.SynchronizedStandbySlots, ", "))
		}
	}

	if len(r.Standbys) == 0 {
		why := "source.url names no other server"
		if len(r.Hosts) > 1 {
			why = "no other server of source.url (" + strings.Join(r.Hosts, ", ") + ") answered as a standby"
		}
		warn("failover: standbys", "list each standby that may be promoted in source.url (postgres://primary:5432,standby:5432/db?target_session_attrs=read-write): "+
			"check inspects them, and pgstream reconnects to the one promoted",
			"no standby can be inspected: %s; whether a standby has a usable copy of slot %s is unknown", why, r.Slot)
	}
	for _, o := range r.Others {
		warn("failover: "+o, "make sure only one server of source.url accepts writes",
			"is not in recovery either: a second primary beside %s", p.Addr)
	}
	for _, s := range r.Standbys {
		out = append(out, s.findings(r.Slot, p, standbySlots)...)
	}
	return out
}

// findings are the standby's own: its settings, then its copy of the slot.
func (s StandbyFailover) findings(slot string, p *PrimaryFailover, standbySlots map[string]bool) []Finding {
	subject := "failover: standby " + s.Addr
	var out []Finding
	warn := func(fix, format string, args ...any) {
		out = append(out, Finding{Subject: subject, Message: fmt.Sprintf(format, args...), Fix: fix})
	}
	on := "; SELECT pg_reload_conf()"
	if !s.SyncReplicationSlots {
		warn("on the standby: ALTER SYSTEM SET sync_replication_slots = on"+on, "sync_replication_slots is off: the standby keeps no copy of failover slots")
	}
	if !s.HotStandbyFeedback {
		warn("on the standby: ALTER SYSTEM SET hot_standby_feedback = on"+on, "hot_standby_feedback is off: slot synchronization needs it")
	}
	if s.WALLevel != "logical" {
		warn("on the standby: ALTER SYSTEM SET wal_level = logical, then restart it", "wal_level is %s: slot synchronization needs logical", s.WALLevel)
	}
	switch _, exists := p.PhysicalSlots[s.PrimarySlotName]; {
	case s.PrimarySlotName == "":
		warn("on the primary: SELECT pg_create_physical_replication_slot('NAME'); on the standby: ALTER SYSTEM SET primary_slot_name = 'NAME'"+on,
			"primary_slot_name is empty: slot synchronization needs the standby to stream through a physical slot")
	case !exists:
		warn("on the primary: SELECT pg_create_physical_replication_slot('"+s.PrimarySlotName+"')",
			"primary_slot_name is %s, which is not a physical slot on the primary %s", s.PrimarySlotName, p.Addr)
	case !standbySlots[s.PrimarySlotName]:
		warn("on the primary: add "+s.PrimarySlotName+" to synchronized_standby_slots"+on,
			"its physical slot %s is not in the primary's synchronized_standby_slots: pgstream may receive changes this standby does not have yet, "+
				"and after promoting it pgstream refuses to resume", s.PrimarySlotName)
	}
	c := s.Slot
	const loud = "NOT READY FOR FAILOVER: "
	switch {
	case !c.Exists:
		warn("set the standby up as above and wait until its slot sync worker has copied the slot (pg_replication_slots on the standby: synced true, temporary false)",
			loud+"the standby has no copy of slot %s: promoted now, it has no slot to resume from and pgstream refuses to start there", slot)
	case !c.Synced:
		warn("drop the standby's slot "+slot+" so that its slot sync worker can copy the primary's",
			loud+"the standby's slot %s is its own, not synchronized from the primary (synced false)", slot)
	case c.Invalidation != "":
		warn("see the standby's log; the slot sync worker recreates the copy once the cause is gone",
			loud+"the standby's copy of slot %s is invalidated (%s)", slot, c.Invalidation)
	case c.Temporary:
		warn("wait until the copy becomes persistent: the slot sync worker makes it so once the primary's slot has moved past the position the copy started from",
			loud+"the standby's copy of slot %s is still temporary: a temporary copy cannot be used after a promotion, and pgstream refuses to resume without the slot", slot)
	default:
		out = append(out, Finding{OK: true, Subject: subject,
			Message: fmt.Sprintf("its copy of slot %s is synced and persistent (confirmed_flush_lsn %s): pgstream can resume there after a promotion", slot, c.ConfirmedFlush)})
	}
	return out
}
