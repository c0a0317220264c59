package snapshot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

func fixedNow() time.Time { return testNow }

// TestReadValues reads rows of every kind of value with a Reader and checks each event against
// the streamed insert of the same row: pgoutput's tuple, encoded by Encoder.Insert, must have the
// same "after" object and key, so the COPY text the Reader parses is the text pgoutput sends.
func TestReadValues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newDB(t, "vals", `CREATE TYPE mood AS ENUM ('sad', 'ok', 'so so');
CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
CREATE TYPE pair AS (a text, b int);
CREATE TABLE vals (id int PRIMARY KEY, t text, b bytea, j json, jb jsonb, ta text[], ia int[], n numeric,
	ts timestamptz, d posint, m mood, c pair, f float8, bo bool, iv interval, dt date, big text);
CREATE PUBLICATION pub FOR TABLE vals;`)
	c.MustExec(t, "vals", `SELECT pg_create_logical_replication_slot('vals', 'pgoutput')`)
	c.MustExec(t, "vals", `INSERT INTO vals (id, t) VALUES
	(1, E'tab\there'), (2, E'new\nline'), (3, E'carriage\rreturn'), (4, E'back\\slash'), (5, 'quotes '' and "'),
	(6, 'unicode é 😀 ☺'), (7, ''), (8, NULL), (9, E'\\N'), (10, E'all\t\n\r\\\b\f\x0b"''é\x01'), (11, E'trailing\\');
INSERT INTO vals VALUES (20, 'x', '\x00ff5c0a0d095c4e', '{"k" : "v\tw", "n": [1, 2.5],
	"z": null}', '{"b": [true, null], "a": "\u263a \"q\""}',
	ARRAY['a"b', 'c,d', NULL, 'NULL', '', E'back\\slash', ' sp ', '{x}', E'tab\there', E'\\N'], '{1,NULL,-3}',
	123456789012345678901234567890.123456789, '2024-01-02 03:04:05.123456+05:30', 5, 'so so', ROW(E'x,"y"\\z', 3),
	0.1::float8 + 0.2, true, '1 year 2 months -3 days 04:05:06.5', '2024-02-29', repeat('big', 50000));
INSERT INTO vals (id, b, ia, n, f, bo, ts, m, c) VALUES
	(21, '', '{}', 'NaN', 'NaN', false, 'infinity', 'sad', ROW(NULL, NULL)),
	(22, NULL, '{{1,2},{3,4}}', -0.5, '-Infinity', NULL, '0044-03-15 12:00:00+00 BC', NULL, ROW('', 0));`)
	s := readSlot(t, ctx, c, "vals", "vals", "pub")

	conn := beginSnapshot(t, ctx, c, "vals")
	tables, err := ListTables(ctx, conn, "pub")
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 1 || tables[0].Name != "vals" {
		t.Fatalf("tables = %+v", tables)
	}
	plans := Plan(tables, testGen, 1)
	r := NewReader(conn, "vals", fixedNow)
	got := readAll(t, ctx, r, &plans[0], tables[0])
	if len(got) != 14 {
		t.Fatalf("%d rows, want 14", len(got))
	}
	oid := tables[0].OID
	checkAgainstStream(t, got, s.rows[oid], oid, "vals", "public", "vals", rowIDs(t, ctx, conn, oid, "vals", ""))
	execSQL(t, ctx, conn, "COMMIT")

	// Spot checks of the mapping itself (the comparison above would pass if both paths were wrong).
	for _, ev := range got {
		v := string(ev.Value)
		switch {
		case strings.Contains(v, `"id":10,`):
			if !strings.Contains(v, `"t":"all\t\n\r\\\u0008\u000c\u000b\"'é\u0001"`) {
				t.Errorf("row 10: %.300s", v)
			}
		case strings.Contains(v, `"id":20,`):
			for _, want := range []string{`"b":"AP9cCg0JXE4="`, `"j":{"k":"v\tw","n":[1,2.5],"z":null}`, `"jb":{"a":"☺ \"q\"","b":[true,null]}`,
				`"ta":["a\"b","c,d",null,"NULL","","back\\slash"," sp ","{x}","tab\there","\\N"]`, `"ia":[1,null,-3]`,
				`"ts":"2024-01-01T21:34:05.123456Z"`, `"d":5`, `"m":"so so"`, `"c":"(\"x,\"\"y\"\"\\\\z\",3)"`, `"f":0.30000000000000004`, `"bo":true`,
				`"iv":"1 year 2 mons -3 days +04:05:06.5"`, `"dt":"2024-02-29"`} {
				if !strings.Contains(v, want) {
					t.Errorf("row 20: no %s in %.600s", want, v)
				}
			}
			if ev.Key == nil || string(ev.Key) != `{"id":20}` {
				t.Errorf("row 20 key %s", ev.Key)
			}
		}
	}
}

// TestRelations checks LoadRelation against the Relation messages pgoutput sends for replica
// identity DEFAULT (with and without a primary key), USING INDEX, FULL and NOTHING, generated and
// dropped columns, quoted names and, on PostgreSQL 15+, a column list and a row filter; and that the
// rows a Reader reads from them are the rows pgoutput publishes.
func TestRelations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newDB(t, "rels", `CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
CREATE TABLE ri_pk (a int, b text, c int, PRIMARY KEY (c, a));
CREATE TABLE ri_nopk (a int, b text);
CREATE TABLE ri_idx (a int NOT NULL, b text NOT NULL, c int);
CREATE UNIQUE INDEX ri_idx_ba ON ri_idx (b, a);
CREATE UNIQUE INDEX ri_idx_c ON ri_idx (c);
ALTER TABLE ri_idx REPLICA IDENTITY USING INDEX ri_idx_ba;
CREATE TABLE ri_full (a int PRIMARY KEY, b text, c numeric(10,2));
ALTER TABLE ri_full REPLICA IDENTITY FULL;
CREATE TABLE ri_full_nopk (a int, b text);
ALTER TABLE ri_full_nopk REPLICA IDENTITY FULL;
CREATE TABLE ri_nothing (a int PRIMARY KEY, b varchar(20));
ALTER TABLE ri_nothing REPLICA IDENTITY NOTHING;
CREATE TABLE gen_drop (a int PRIMARY KEY, x int, g int GENERATED ALWAYS AS (a * 2) STORED, m mood, d posint, e char(4));
ALTER TABLE gen_drop DROP COLUMN x;
CREATE SCHEMA "Other";
CREATE TABLE "Other"."Mixed Case" ("Id" int PRIMARY KEY, "we""ird" text);
CREATE PUBLICATION pub FOR TABLE ri_pk, ri_nopk, ri_idx, ri_full, ri_full_nopk, ri_nothing, gen_drop, "Other"."Mixed Case"
	WITH (publish = 'insert');`)
	pg15 := c.Version >= 15
	if pg15 {
		c.MustExec(t, "rels", `CREATE TABLE filtered (a int PRIMARY KEY, b text, c text, d int);
ALTER PUBLICATION pub ADD TABLE filtered (a, c) WHERE (d > 10 AND c <> 'skip');`)
	} else {
		t.Logf("PostgreSQL %d: no column lists or row filters", c.Version)
	}
	c.MustExec(t, "rels", `SELECT pg_create_logical_replication_slot('rels', 'pgoutput')`)
	c.MustExec(t, "rels", `INSERT INTO ri_pk VALUES (1, 'x', 10), (2, NULL, 10);
INSERT INTO ri_nopk VALUES (1, 'x'), (1, 'x'), (NULL, NULL);
INSERT INTO ri_idx VALUES (1, 'x', 7), (2, 'x', NULL);
INSERT INTO ri_full VALUES (1, 'x', 1.5), (2, NULL, NULL);
INSERT INTO ri_full_nopk VALUES (1, 'x'), (NULL, NULL);
INSERT INTO ri_nothing VALUES (1, 'x');
INSERT INTO gen_drop (a, m, d, e) VALUES (1, 'ok', 3, 'ab'), (2, NULL, NULL, NULL);
INSERT INTO "Other"."Mixed Case" VALUES (1, 'q"q');`)
	if pg15 {
		c.MustExec(t, "rels", `INSERT INTO filtered VALUES (1, 'b', 'c', 5), (2, 'b', 'c', 11), (3, 'b', 'skip', 20), (4, NULL, NULL, 30), (5, 'b', 'x', 12);`)
	}
	s := readSlot(t, ctx, c, "rels", "rels", "pub")

	conn := beginSnapshot(t, ctx, c, "rels")
	tables, err := ListTables(ctx, conn, "pub")
	if err != nil {
		t.Fatal(err)
	}
	wantTables := 8
	if pg15 {
		wantTables++
	}
	if len(tables) != wantTables {
		t.Fatalf("%d tables, want %d: %+v", len(tables), wantTables, tables)
	}
	wantKeys := map[string]string{
		"ri_pk":        `{"a":1,"c":10}`,
		"ri_nopk":      `<nil>`,
		"ri_idx":       `{"a":1,"b":"x"}`,
		"ri_full":      `{"a":1}`,
		"ri_full_nopk": `{"a":1,"b":"x"}`,
		"ri_nothing":   `<nil>`,
		"gen_drop":     `{"a":1}`,
		"Mixed Case":   `{"Id":1}`,
		"filtered":     `{"a":2}`,
	}
	plans := Plan(tables, testGen, 1)
	r := NewReader(conn, "rels", fixedNow)
	for i, tbl := range tables {
		rel, err := LoadRelation(ctx, conn, tbl.OID, tbl.Schema, tbl.Name, tbl.Columns)
		if err != nil {
			t.Fatalf("%s: %v", tbl.QualifiedName(), err)
		}
		want := s.rels[tbl.OID]
		if want == nil {
			t.Fatalf("%s: no Relation message streamed", tbl.QualifiedName())
		}
		if fmt.Sprintf("%+v", rel) != fmt.Sprintf("%+v", want) {
			t.Errorf("%s: LoadRelation\n got %+v\nwant %+v (pgoutput)", tbl.QualifiedName(), rel, want)
		}
		got := readAll(t, ctx, r, &plans[i], tbl)
		where := ""
		if tbl.RowFilter != "" {
			where = "WHERE " + tbl.RowFilter
		}
		name := pgsql.QuoteIdent(tbl.Schema) + "." + pgsql.QuoteIdent(tbl.Name)
		checkAgainstStream(t, got, s.rows[tbl.OID], tbl.OID, "rels", tbl.Schema, tbl.Name, rowIDs(t, ctx, conn, tbl.OID, name, where))
		keys := make([]string, len(got))
		for j, ev := range got {
			keys[j] = keyText(ev.Key)
		}
		if !slices.Contains(keys, wantKeys[tbl.Name]) {
			t.Errorf("%s: keys %q, want one to be %s", tbl.QualifiedName(), keys, wantKeys[tbl.Name])
		}
	}
	if pg15 {
		i := slices.IndexFunc(tables, func(t Table) bool { return t.Name == "filtered" })
		if tbl := tables[i]; !slices.Equal(tbl.Columns, []string{"a", "c"}) || tbl.RowFilter != "((d > 10) AND (c <> 'skip'::text))" {
			t.Errorf("filtered: columns %q, row filter %q", tbl.Columns, tbl.RowFilter)
		}
		if n := len(s.rows[tables[i].OID]); n != 2 {
			t.Errorf("filtered: %d rows streamed, want 2", n)
		}
	}
	// Every column flag of the stream is set on the relation LoadRelation builds for the same table
	// (checked above); and ri_idx's key is the identity index's, not the other unique index's.
	rel, err := LoadRelation(ctx, conn, tables[slices.IndexFunc(tables, func(t Table) bool { return t.Name == "ri_idx" })].OID, "public", "ri_idx", nil)
	if err != nil {
		t.Fatal(err)
	}
	var flagged []string
	for _, c := range rel.Columns {
		if c.IsKey() {
			flagged = append(flagged, c.Name)
		}
	}
	if !slices.Equal(flagged, []string{"a", "b"}) || rel.ReplicaIdentity != walparse.ReplicaIdentityIndex {
		t.Errorf("ri_idx: key columns %q, identity %q", flagged, rel.ReplicaIdentity)
	}
	// A column list naming a column the table does not have is an error.
	if _, err := LoadRelation(ctx, conn, rel.RelationID, "public", "ri_idx", []string{"a", "nope"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown column: %v", err)
	}
	execSQL(t, ctx, conn, "COMMIT")
}

// TestChunks reads a table of many pages in small chunks: every row is read exactly once, by the
// chunk of its page, rows added past the planned size are read by the last chunk, and an empty
// table is one chunk of no rows.
func TestChunks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newDB(t, "chunks", `CREATE TABLE big (id int PRIMARY KEY, pad text);
CREATE TABLE empty (id int PRIMARY KEY);
CREATE PUBLICATION pub FOR TABLE big, empty;
INSERT INTO big SELECT i, repeat('x', 200) FROM generate_series(1, 5000) i;`)
	setup := connect(t, ctx, c, "chunks")
	tables, err := ListTables(ctx, setup, "pub")
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 2 || tables[0].Name != "big" || tables[1].Name != "empty" {
		t.Fatalf("tables = %+v", tables)
	}
	big, empty := tables[0], tables[1]
	if big.Pages < 100 || empty.Pages != 0 {
		t.Fatalf("pages: big %d, empty %d", big.Pages, empty.Pages)
	}
	plans := Plan(tables, testGen, 7)
	if n := plans[0].Chunks(); n != (big.Pages+6)/7 || n < 15 {
		t.Fatalf("%d chunks of %d pages", n, big.Pages)
	}
	if plans[1].Chunks() != 1 {
		t.Fatalf("empty table: %d chunks", plans[1].Chunks())
	}
	// Rows added after planning land in pages past the planned size.
	execSQL(t, ctx, setup, `INSERT INTO big SELECT i, repeat('y', 200) FROM generate_series(5001, 5500) i`)
	lastPage, err := strconv.Atoi(queryRows(t, ctx, setup, `SELECT max((ctid::text::point)[0])::int FROM big`)[0][0])
	if err != nil || lastPage < int(big.Pages) {
		t.Fatalf("no row past page %d (last page %d, %v)", big.Pages, lastPage, err)
	}

	conn := beginSnapshot(t, ctx, c, "chunks")
	r := NewReader(conn, "chunks", fixedNow)
	got := readAll(t, ctx, r, &plans[0], big)
	seen := make(map[string]int)
	last := plans[0].Chunks() - 1
	pastPlan := 0
	for _, ev := range got {
		seen[afterOf(t, ev.Value)]++
		block := uint32(ev.Row >> 16)
		start, end, isLast := plans[0].PageRange(ev.chunk)
		if block < start || (!isLast && block >= end) {
			t.Errorf("row in page %d read by chunk %d [%d, %d)", block, ev.chunk, start, end)
		}
		if block >= big.Pages {
			pastPlan++
			if ev.chunk != last {
				t.Errorf("row in page %d past the plan read by chunk %d", block, ev.chunk)
			}
		}
	}
	if len(got) != 5500 || len(seen) != 5500 {
		t.Errorf("%d rows read, %d distinct, want 5500", len(got), len(seen))
	}
	for after, n := range seen {
		if n != 1 {
			t.Errorf("row %.40s read %d times", after, n)
		}
	}
	if pastPlan == 0 {
		t.Error("no row past the planned pages was read")
	}
	ids := rowIDs(t, ctx, conn, big.OID, "big", "")
	var gotIDs []string
	for _, ev := range got {
		gotIDs = append(gotIDs, ev.ID())
	}
	slices.Sort(gotIDs)
	if !slices.Equal(gotIDs, ids) {
		t.Error("the ids of the rows read are not the ids of the table's row versions")
	}

	// Reading a chunk again gives the same events.
	again := func(i uint32) []string {
		var out []string
		if _, err := r.ReadChunk(ctx, &plans[0], nil, "", i, func(ev sinks.Event) error {
			out = append(out, string(ev.Value))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if a, b := again(3), again(3); len(a) == 0 || !slices.Equal(a, b) {
		t.Errorf("chunk 3 read twice: %d and %d rows, equal %v", len(a), len(b), slices.Equal(a, b))
	}

	n, err := r.ReadChunk(ctx, &plans[1], nil, "", 0, func(ev sinks.Event) error {
		t.Errorf("empty table emitted %s", ev.Value)
		return nil
	})
	if err != nil || n != 0 {
		t.Errorf("empty table: %d rows, %v", n, err)
	}
	if _, err := r.ReadChunk(ctx, &plans[1], nil, "", 1, func(sinks.Event) error { return nil }); err == nil {
		t.Error("chunk 1 of a one-chunk table was read")
	}
	execSQL(t, ctx, conn, "COMMIT")
}

// TestTableGone checks that a table dropped, renamed or recreated under its name after planning is
// ErrTableGone, before the first chunk and between chunks.
func TestTableGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newDB(t, "gone", `CREATE TABLE dropped (id int PRIMARY KEY);
CREATE TABLE recreated (id int PRIMARY KEY);
CREATE TABLE renamed (id int PRIMARY KEY);
CREATE TABLE twice (id int PRIMARY KEY, pad text);
CREATE PUBLICATION pub FOR ALL TABLES;
INSERT INTO dropped VALUES (1); INSERT INTO recreated VALUES (1); INSERT INTO renamed VALUES (1);
INSERT INTO twice SELECT i, repeat('x', 500) FROM generate_series(1, 100) i;`)
	conn := connect(t, ctx, c, "gone")
	tables, err := ListTables(ctx, conn, "pub")
	if err != nil {
		t.Fatal(err)
	}
	plans := Plan(tables, testGen, 2)
	byName := func(name string) (*checkpoint.TableSnapshot, Table) {
		for i := range tables {
			if tables[i].Name == name {
				return &plans[i], tables[i]
			}
		}
		t.Fatalf("no table %s", name)
		return nil, Table{}
	}
	c.MustExec(t, "gone", `DROP TABLE dropped; DROP TABLE recreated; CREATE TABLE recreated (id int PRIMARY KEY);
INSERT INTO recreated VALUES (2); ALTER TABLE renamed RENAME TO renamed2`)
	emit := func(sinks.Event) error { return nil }
	for _, name := range []string{"dropped", "recreated", "renamed"} {
		ts, tbl := byName(name)
		if _, err := LoadRelation(ctx, conn, tbl.OID, tbl.Schema, tbl.Name, nil); !errors.Is(err, ErrTableGone) {
			t.Errorf("%s: LoadRelation: %v", name, err)
		}
		if _, err := NewReader(conn, "gone", nil).ReadChunk(ctx, ts, nil, "", 0, emit); !errors.Is(err, ErrTableGone) {
			t.Errorf("%s: ReadChunk: %v", name, err)
		}
	}

	// Between two chunks of the same Reader (outside a transaction, so the table can be dropped).
	ts, _ := byName("twice")
	if ts.Chunks() < 2 {
		t.Fatalf("twice: %d chunks", ts.Chunks())
	}
	r := NewReader(conn, "gone", nil)
	if n, err := r.ReadChunk(ctx, ts, nil, "", 0, emit); err != nil || n == 0 {
		t.Fatalf("twice chunk 0: %d rows, %v", n, err)
	}
	c.MustExec(t, "gone", `DROP TABLE twice; CREATE TABLE twice (id int PRIMARY KEY, pad text);
INSERT INTO twice SELECT i, repeat('x', 500) FROM generate_series(1, 100) i;`)
	if _, err := r.ReadChunk(ctx, ts, nil, "", 1, emit); !errors.Is(err, ErrTableGone) {
		t.Errorf("twice chunk 1 after recreation: %v", err)
	}
	c.MustExec(t, "gone", `DROP TABLE twice`)
	if _, err := r.ReadChunk(ctx, ts, nil, "", 1, emit); !errors.Is(err, ErrTableGone) {
		t.Errorf("twice chunk 1 after drop: %v", err)
	}

	// Inside a repeatable-read transaction whose snapshot predates the change, the catalog still
	// shows the old table, but the COPY would read whatever the name means now.
	c.MustExec(t, "gone", `CREATE TABLE rr_dropped (id int); CREATE TABLE rr_recreated (id int);
INSERT INTO rr_dropped VALUES (1); INSERT INTO rr_recreated VALUES (1);`)
	tables, err = ListTables(ctx, conn, "pub")
	if err != nil {
		t.Fatal(err)
	}
	plans = Plan(tables, testGen, 2)
	tx := beginSnapshot(t, ctx, c, "gone")
	queryRows(t, ctx, tx, "SELECT 1") // take the snapshot
	c.MustExec(t, "gone", `DROP TABLE rr_dropped; DROP TABLE rr_recreated; CREATE TABLE rr_recreated (id int);`)
	for _, name := range []string{"rr_dropped", "rr_recreated"} {
		ts, tbl := byName(name)
		if _, err := LoadRelation(ctx, tx, tbl.OID, tbl.Schema, tbl.Name, nil); !errors.Is(err, ErrTableGone) {
			t.Errorf("%s: LoadRelation in the old snapshot: %v", name, err)
		}
		if _, err := NewReader(tx, "gone", nil).ReadChunk(ctx, ts, nil, "", 0, emit); !errors.Is(err, ErrTableGone) {
			t.Errorf("%s: ReadChunk in the old snapshot: %v", name, err)
		}
	}
	execSQL(t, ctx, tx, "COMMIT")
}

// TestEmitError checks that an error from emit stops the read and is what ReadChunk returns, and
// records what pgconn does to the connection then: CopyTo closes it.
func TestEmitError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newDB(t, "emiterr", `CREATE TABLE t (id int PRIMARY KEY, pad text);
CREATE PUBLICATION pub FOR TABLE t;
INSERT INTO t SELECT i, repeat('x', 100) FROM generate_series(1, 20000) i;`)
	conn := beginSnapshot(t, ctx, c, "emiterr")
	tables, err := ListTables(ctx, conn, "pub")
	if err != nil {
		t.Fatal(err)
	}
	plans := Plan(tables, testGen, 1000)
	errStop := errors.New("sink is full")
	calls := 0
	n, err := NewReader(conn, "emiterr", nil).ReadChunk(ctx, &plans[0], nil, "", 0, func(sinks.Event) error {
		calls++
		if calls == 11 {
			return errStop
		}
		return nil
	})
	if err != errStop {
		t.Fatalf("ReadChunk error = %v, want the emit error itself", err)
	}
	if n != 10 || calls != 11 {
		t.Errorf("%d rows, %d calls, want 10 and 11", n, calls)
	}
	if !conn.IsClosed() {
		t.Error("the connection is still open after CopyTo's writer failed")
	}
	select {
	case <-conn.CleanupDone():
	case <-time.After(30 * time.Second):
		t.Error("the connection's cleanup did not finish")
	}

	// A new connection reads the whole chunk.
	conn = beginSnapshot(t, ctx, c, "emiterr")
	n, err = NewReader(conn, "emiterr", nil).ReadChunk(ctx, &plans[0], nil, "", 0, func(sinks.Event) error { return nil })
	if err != nil || n != 20000 {
		t.Errorf("second read: %d rows, %v", n, err)
	}
}
