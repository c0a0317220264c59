package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/lsn"
)

func num(v any) string {
	if n, ok := v.(json.Number); ok {
		return n.String()
	}
	return fmt.Sprintf("<%T %v>", v, v)
}

func TestEveryOperation(t *testing.T) {
	db := newDB(t)
	exec1(t, db, `CREATE TABLE t (id int PRIMARY KEY, name text, n int);
		CREATE TABLE u (k text PRIMARY KEY)`)
	r := startPipeline(t, db, runOpts{})
	r.waitStreaming()
	exec1(t, db, `INSERT INTO t VALUES (1, 'one', 10), (2, 'two', 20)`)
	exec1(t, db, `UPDATE t SET n = 11 WHERE id = 1`)
	exec1(t, db, `UPDATE t SET id = 3 WHERE id = 2`) // key change
	exec1(t, db, `DELETE FROM t WHERE id = 1`)
	exec1(t, db, `INSERT INTO u VALUES ('x')`)
	exec1(t, db, `TRUNCATE t, u`)
	exec1(t, db, `BEGIN; INSERT INTO u VALUES ('y'); SELECT pg_logical_emit_message(true, 'audit', 'in tx'); COMMIT`)
	exec1(t, db, `SELECT pg_logical_emit_message(false, 'cache', E'not\001tx')`)
	evs := waitEvents(t, r.path, 60*time.Second, atLeast(11))
	if err := r.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	evs = readEvents(t, r.path)
	if len(evs) != 11 {
		t.Fatalf("got %d events, want 11:\n%s", len(evs), tail(evs, 20))
	}
	ops := ""
	for _, e := range evs {
		ops += e.Op
	}
	if ops != "ccuudcttcmm" {
		t.Fatalf("ops = %q, want ccuudcttcmm\n%s", ops, tail(evs, 20))
	}
	ins := evs[0]
	if ins.Source.Connector != "pgstream" || ins.Source.DB != db || ins.Source.Schema != "public" || ins.Source.Table != "t" {
		t.Errorf("source = %+v", ins.Source)
	}
	if ins.Source.TxID == nil || *ins.Source.TxID == 0 {
		t.Errorf("txId missing: %s", ins.Raw)
	}
	// Two rows of one statement: same commit, consecutive seqs, distinct ids.
	if evs[0].Source.CommitLSN != evs[1].Source.CommitLSN || evs[0].ID == evs[1].ID {
		t.Errorf("multi-row insert ids: %s %s", evs[0].ID, evs[1].ID)
	}
	if !strings.HasPrefix(evs[0].ID, evs[0].Source.CommitLSN+"/") {
		t.Errorf("id %q does not start with commit_lsn %q", evs[0].ID, evs[0].Source.CommitLSN)
	}
	if a := ins.row("after"); num(a["id"]) != "1" || a["name"] != "one" || num(a["n"]) != "10" {
		t.Errorf("insert after = %v", a)
	}
	if string(ins.Before) != "null" {
		t.Errorf("insert before = %s", ins.Before)
	}
	upd := evs[2]
	if string(upd.Before) != "null" {
		t.Errorf("update without key change, default identity: before = %s, want null", upd.Before)
	}
	if a := upd.row("after"); num(a["n"]) != "11" {
		t.Errorf("update after = %v", a)
	}
	keyUpd := evs[3]
	if b := keyUpd.row("before"); len(b) != 1 || num(b["id"]) != "2" {
		t.Errorf("key change before = %s, want {id:2}", keyUpd.Before)
	}
	del := evs[4]
	if b := del.row("before"); len(b) != 1 || num(b["id"]) != "1" {
		t.Errorf("delete before = %s, want {id:1}", del.Before)
	}
	if string(del.After) != "null" {
		t.Errorf("delete after = %s", del.After)
	}
	if evs[6].Source.Table != "t" || evs[7].Source.Table != "u" || evs[6].ID == evs[7].ID {
		t.Errorf("truncate events: %s | %s", evs[6].Raw, evs[7].Raw)
	}
	m := evs[9]
	if m.Message == nil || m.Message.Prefix != "audit" || !m.Message.Transactional || m.Source.CommitLSN != evs[8].Source.CommitLSN {
		t.Fatalf("transactional message: %s", m.Raw)
	}
	if c, _ := base64.StdEncoding.DecodeString(m.Message.Content); string(c) != "in tx" {
		t.Errorf("message content = %q", c)
	}
	nt := evs[10]
	if nt.Message == nil || nt.Message.Transactional || nt.Message.Prefix != "cache" {
		t.Fatalf("non-transactional message: %s", nt.Raw)
	}
	if c, _ := base64.StdEncoding.DecodeString(nt.Message.Content); string(c) != "not\x01tx" {
		t.Errorf("message content = %q", c)
	}
	// Commit time and emit time are in milliseconds since the epoch and plausible.
	now := time.Now().UnixMilli()
	for _, e := range evs {
		if e.Source.TsMs < now-600_000 || e.Source.TsMs > now+1000 || e.TsMs < e.Source.TsMs-1000 {
			t.Errorf("implausible timestamps in %s", e.Raw)
		}
	}
}

func TestRollbackAndSavepointsAreInvisible(t *testing.T) {
	db := newDB(t)
	exec1(t, db, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	r := startPipeline(t, db, runOpts{})
	r.waitStreaming()
	exec1(t, db, `BEGIN; INSERT INTO t VALUES (1, 'rolled back'); ROLLBACK`)
	exec1(t, db, `BEGIN; INSERT INTO t VALUES (2, 'kept');
		SAVEPOINT a; INSERT INTO t VALUES (3, 'undone'); UPDATE t SET v = 'undone' WHERE id = 2; ROLLBACK TO SAVEPOINT a;
		SAVEPOINT b; INSERT INTO t VALUES (4, 'kept too'); RELEASE SAVEPOINT b;
		COMMIT`)
	exec1(t, db, `INSERT INTO t VALUES (5, 'marker')`)
	evs := waitEvents(t, r.path, 60*time.Second, func(e []event) bool {
		return len(e) > 0 && num(e[len(e)-1].row("after")["id"]) == "5"
	})
	var ids []string
	for _, e := range evs {
		a := e.row("after")
		ids = append(ids, num(a["id"])+":"+fmt.Sprint(a["v"]))
	}
	if got := strings.Join(ids, ","); got != "2:kept,4:kept too,5:marker" {
		t.Fatalf("events = %s", got)
	}
	if evs[0].Source.CommitLSN != evs[1].Source.CommitLSN {
		t.Errorf("rows of one transaction have different commit LSNs")
	}
}

func TestCopyRowsGetTheirOwnIDs(t *testing.T) {
	db := newDB(t)
	exec1(t, db, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	r := startPipeline(t, db, runOpts{})
	r.waitStreaming()
	// COPY FROM a server-side program is not allowed to every role; a multi-row COPY via psql-less
	// path: COPY ... FROM with a generated file.
	// In the cluster's own directory: database names repeat across test runs, which may run at once.
	csv := filepath.Join(cluster.Dir, "copy_"+db+".csv")
	exec1(t, db, `COPY (SELECT g, 'row ' || g FROM generate_series(1, 500) g) TO '`+csv+`' WITH (FORMAT csv)`)
	exec1(t, db, `COPY t FROM '`+csv+`' WITH (FORMAT csv)`)
	evs := waitEvents(t, r.path, 60*time.Second, atLeast(500))
	seen := map[string]bool{}
	for i, e := range evs {
		if e.Op != "c" || seen[e.ID] {
			t.Fatalf("event %d: op %s id %s (dup %v)", i, e.Op, e.ID, seen[e.ID])
		}
		seen[e.ID] = true
		if want := fmt.Sprintf("%s/%d", e.Source.CommitLSN, i); e.ID != want {
			t.Fatalf("event %d id %s, want %s", i, e.ID, want)
		}
		if got := num(e.row("after")["id"]); got != fmt.Sprint(i+1) {
			t.Fatalf("event %d is row %s", i, got)
		}
	}
}

func TestReplicaIdentityFullAndToast(t *testing.T) {
	db := newDB(t)
	exec1(t, db, `CREATE TABLE def (id int PRIMARY KEY, big text, n int);
		CREATE TABLE full_ (id int PRIMARY KEY, big text, n int);
		ALTER TABLE full_ REPLICA IDENTITY FULL;
		ALTER TABLE def ALTER COLUMN big SET STORAGE EXTERNAL;
		ALTER TABLE full_ ALTER COLUMN big SET STORAGE EXTERNAL`)
	big := strings.Repeat("toast-me-", 2000) // 18 kB, stored out of line
	exec1(t, db, `INSERT INTO def VALUES (1, '`+big+`', 1); INSERT INTO full_ VALUES (1, '`+big+`', 1)`)
	r := startPipeline(t, db, runOpts{})
	r.waitStreaming()
	exec1(t, db, `UPDATE def SET n = 2 WHERE id = 1`)
	exec1(t, db, `UPDATE full_ SET n = 2 WHERE id = 1`)
	exec1(t, db, `DELETE FROM full_ WHERE id = 1`)
	evs := waitEvents(t, r.path, 60*time.Second, atLeast(3))
	d := evs[0]
	if d.Source.Table != "def" || d.Op != "u" {
		t.Fatalf("first event: %s", d.Raw[:min(200, len(d.Raw))])
	}
	if a := d.row("after"); a["big"] != nil || num(a["n"]) != "2" {
		t.Errorf("default identity: unchanged TOAST column must be left out of after, got keys %v", keys(a))
	} else if _, present := a["big"]; present {
		t.Errorf("unchanged TOAST column present (as null) in after")
	}
	if len(d.UnchangedToast) != 1 || d.UnchangedToast[0] != "big" {
		t.Errorf("unchanged_toast = %v, want [big]", d.UnchangedToast)
	}
	f := evs[1]
	if a := f.row("after"); a["big"] != big || num(a["n"]) != "2" {
		t.Errorf("FULL identity: TOAST column must be filled from before; after keys %v", keys(a))
	}
	if len(f.UnchangedToast) != 0 {
		t.Errorf("FULL identity: unchanged_toast = %v, want none", f.UnchangedToast)
	}
	if b := f.row("before"); b["big"] != big || num(b["n"]) != "1" {
		t.Errorf("FULL identity: before must hold the whole old row, keys %v", keys(b))
	}
	del := evs[2]
	if b := del.row("before"); b["big"] != big || num(b["id"]) != "1" || num(b["n"]) != "2" {
		t.Errorf("FULL identity delete: before keys %v", keys(b))
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSchemaChangeMidStream(t *testing.T) {
	db := newDB(t)
	exec1(t, db, `CREATE TABLE t (id int PRIMARY KEY, a text, b int)`)
	r := startPipeline(t, db, runOpts{})
	r.waitStreaming()
	exec1(t, db, `INSERT INTO t VALUES (1, 'a1', 1)`)
	exec1(t, db, `ALTER TABLE t ADD COLUMN c boolean DEFAULT true`)
	exec1(t, db, `INSERT INTO t VALUES (2, 'a2', 2, false)`)
	exec1(t, db, `ALTER TABLE t DROP COLUMN a`)
	exec1(t, db, `INSERT INTO t VALUES (3, 3, true)`)
	exec1(t, db, `ALTER TABLE t RENAME COLUMN b TO bee`)
	exec1(t, db, `ALTER TABLE t ALTER COLUMN bee TYPE numeric USING bee::numeric`)
	exec1(t, db, `INSERT INTO t VALUES (4, 4.5, NULL)`)
	exec1(t, db, `ALTER TABLE t RENAME TO t2`)
	exec1(t, db, `INSERT INTO t2 VALUES (5, 5, true)`)
	evs := waitEvents(t, r.path, 60*time.Second, atLeast(5))
	want := []string{
		`{"a":"a1","b":1,"id":1}`,
		`{"a":"a2","b":2,"c":false,"id":2}`,
		`{"b":3,"c":true,"id":3}`,
		`{"bee":"4.5","c":null,"id":4}`,
		`{"bee":"5","c":true,"id":5}`,
	}
	for i, w := range want {
		var m map[string]any
		_ = json.Unmarshal(evs[i].After, &m)
		got, _ := json.Marshal(m)
		if string(got) != w {
			t.Errorf("event %d after = %s, want %s", i, got, w)
		}
	}
	if evs[4].Source.Table != "t2" {
		t.Errorf("renamed table: source.table = %q", evs[4].Source.Table)
	}
}

func TestPublicationOfSelectedTables(t *testing.T) {
	db := newDB(t)
	exec1(t, db, `CREATE TABLE wanted (id int PRIMARY KEY); CREATE TABLE other (id int PRIMARY KEY)`)
	r := startPipeline(t, db, runOpts{tables: []string{"wanted"}})
	r.waitStreaming()
	exec1(t, db, `INSERT INTO other VALUES (1); INSERT INTO wanted VALUES (1); INSERT INTO other VALUES (2); INSERT INTO wanted VALUES (2)`)
	// A later transaction marks the end: once it is delivered, so is everything before it.
	exec1(t, db, `INSERT INTO other VALUES (3); INSERT INTO wanted VALUES (3)`)
	evs := waitEvents(t, r.path, 60*time.Second, func(e []event) bool {
		return len(e) > 0 && num(e[len(e)-1].row("after")["id"]) == "3"
	})
	for _, e := range evs {
		if e.Source.Table != "wanted" {
			t.Fatalf("event of an unpublished table: %s", e.Raw)
		}
	}
	if len(evs) != 3 {
		t.Fatalf("got %d events, want 3", len(evs))
	}
}

// With an end position the pipeline stops by itself, cleanly, once everything up to it is delivered.
func TestEndPositionStopsCleanly(t *testing.T) {
	db := newDB(t)
	slot := "end_" + db
	exec1(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
	exec1(t, db, fmt.Sprintf(`CREATE PUBLICATION pgs_%s FOR ALL TABLES`, slot))
	exec1(t, db, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, slot))
	exec1(t, db, `INSERT INTO t SELECT generate_series(1, 300)`)
	end, err := cluster.Query(db, `SELECT pg_current_wal_lsn()`)
	if err != nil {
		t.Fatal(err)
	}
	endLSN, err := lsn.Parse(end)
	if err != nil {
		t.Fatal(err)
	}
	r := startPipeline(t, db, runOpts{slot: slot, pcfg: pipeline.Config{EndLSN: endLSN}})
	select {
	case err := <-r.done:
		r.ended, r.result = true, err
		if err != nil {
			t.Fatalf("run ended with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the pipeline did not stop at the end position")
	}
	if evs := readEvents(t, r.path); len(evs) != 300 {
		t.Fatalf("%d events delivered before the end position, want 300", len(evs))
	}
}
