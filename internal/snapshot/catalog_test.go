package snapshot

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/checkpoint"
)

func TestListAndLookupTables(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newDB(t, "list", `CREATE TABLE b_tab (id int PRIMARY KEY, pad text);
CREATE TABLE a_tab (id int PRIMARY KEY);
CREATE SCHEMA "Mixed"; CREATE TABLE "Mixed"."CaseT" (id int);
CREATE SCHEMA s2; CREATE TABLE s2.t (id int);
CREATE TABLE "dot.ted" (id int);
CREATE TABLE other (id int);
CREATE PUBLICATION pub FOR TABLE b_tab, a_tab, "Mixed"."CaseT", s2.t, "dot.ted";
CREATE PUBLICATION empty_pub;
INSERT INTO b_tab SELECT i, repeat('x', 300) FROM generate_series(1, 1000) i;
ANALYZE b_tab;`)
	conn := connect(t, ctx, c, "list")
	tables, err := ListTables(ctx, conn, "pub")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tb := range tables {
		names = append(names, tb.QualifiedName())
		if tb.Columns != nil || tb.RowFilter != "" || tb.OID == 0 {
			t.Errorf("%s: %+v", tb.QualifiedName(), tb)
		}
	}
	if want := []string{"Mixed.CaseT", "public.a_tab", "public.b_tab", "public.dot.ted", "s2.t"}; !slices.Equal(names, want) {
		t.Fatalf("tables %q, want %q", names, want)
	}
	b := tables[2]
	pages, _ := strconv.Atoi(queryRows(t, ctx, conn, `SELECT pg_relation_size('b_tab') / 8192`)[0][0])
	if int(b.Pages) != pages || pages < 10 || b.Rows != 1000 {
		t.Errorf("b_tab: pages %d (want %d), rows %v (want 1000)", b.Pages, pages, b.Rows)
	}
	if a := tables[1]; a.Pages != 0 || a.Rows > 0 {
		t.Errorf("a_tab: pages %d, rows %v", a.Pages, a.Rows)
	}
	if oid := queryRows(t, ctx, conn, `SELECT '"Mixed"."CaseT"'::regclass::oid`)[0][0]; strconv.FormatUint(uint64(tables[0].OID), 10) != oid {
		t.Errorf("Mixed.CaseT oid %d, want %s", tables[0].OID, oid)
	}

	if got, err := ListTables(ctx, conn, "empty_pub"); err != nil || got != nil {
		t.Errorf("empty publication: %+v, %v", got, err)
	}
	if _, err := ListTables(ctx, conn, "nope"); !errors.Is(err, ErrNoPublication) {
		t.Errorf("missing publication: %v", err)
	}

	got, err := LookupTables(ctx, conn, "pub", []string{"s2.t", "a_tab", "Mixed.CaseT", "public.a_tab", "public.dot.ted"})
	if err != nil {
		t.Fatal(err)
	}
	names = names[:0]
	for _, tb := range got {
		names = append(names, tb.QualifiedName())
	}
	if want := []string{"s2.t", "public.a_tab", "Mixed.CaseT", "public.dot.ted"}; !slices.Equal(names, want) {
		t.Errorf("lookup: %q, want %q", names, want)
	}

	_, err = LookupTables(ctx, conn, "pub", []string{"a_tab", "other", "mixed.caset", `we"ird.x`, "dot.ted"})
	if !errors.Is(err, ErrNotInPublication) {
		t.Fatalf("lookup of unpublished tables: %v", err)
	}
	for _, want := range []string{`"other"`, `"mixed.caset"`, `"we\"ird.x"`,
		`ALTER PUBLICATION "pub" ADD TABLE "public"."other", "mixed"."caset", "we""ird"."x", "dot"."ted"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "a_tab") {
		t.Errorf("error %q names a published table", err)
	}
	if _, err := LookupTables(ctx, conn, "nope", []string{"a_tab"}); !errors.Is(err, ErrNoPublication) {
		t.Errorf("lookup in a missing publication: %v", err)
	}
}

func TestPlan(t *testing.T) {
	tables := []Table{
		{OID: 10, Schema: "public", Name: "a", Pages: 10},
		{OID: 11, Schema: "s", Name: "b", Pages: 0},
		{OID: 12, Schema: "s", Name: "c", Pages: 9000},
	}
	plans := Plan(tables, testGen, 4)
	want := []checkpoint.TableSnapshot{
		{Gen: testGen, OID: 10, Schema: "public", Table: "a", Pages: 10, ChunkPages: 4},
		{Gen: testGen, OID: 11, Schema: "s", Table: "b", Pages: 0, ChunkPages: 4},
		{Gen: testGen, OID: 12, Schema: "s", Table: "c", Pages: 9000, ChunkPages: 4},
	}
	if len(plans) != len(want) {
		t.Fatalf("%d plans", len(plans))
	}
	for i := range want {
		if p := plans[i]; p.Gen != want[i].Gen || p.OID != want[i].OID || p.Schema != want[i].Schema || p.Table != want[i].Table ||
			p.Pages != want[i].Pages || p.ChunkPages != want[i].ChunkPages || p.Done != nil {
			t.Errorf("plan %d = %+v, want %+v", i, p, want[i])
		}
		if err := plans[i].Validate(); err != nil {
			t.Errorf("plan %d: %v", i, err)
		}
	}
	if n := []uint32{plans[0].Chunks(), plans[1].Chunks()}; n[0] != 3 || n[1] != 1 {
		t.Errorf("chunks %v, want [3 1]", n)
	}
	if p := Plan(tables[2:], testGen, 0); p[0].ChunkPages != DefaultChunkPages || p[0].Chunks() != 9 { // 9000 pages
		t.Errorf("default chunk size: %+v", p[0])
	}
}
