package events

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgstream/pgstream/walparse"
)

// sessionGUCs are the settings of the replication session, under which pgoutput prints values.
const sessionGUCs = `SET DateStyle = ISO; SET TimeZone = 'UTC'; SET IntervalStyle = postgres;
SET extra_float_digits = 1; SET bytea_output = hex`

const serverTypes = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'so so');
CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
CREATE DOMAIN posint2 AS posint;
CREATE DOMAIN intlist AS int4[];
`

// asText marks a case whose expected JSON value is the server's text output as a string.
type asText struct{}

func connect(t *testing.T, ctx context.Context) *pgconn.PgConn {
	t.Helper()
	return connect2(t, ctx, "postgres")
}

func execSQL(t *testing.T, ctx context.Context, conn *pgconn.PgConn, sql string) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// queryRow runs sql and returns the first row's columns as text; a NULL is "".
func queryRow(t *testing.T, ctx context.Context, conn *pgconn.PgConn, sql string) []string {
	t.Helper()
	res := conn.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatalf("%s: %v", sql, res.Err)
	}
	if len(res.Rows) != 1 {
		t.Fatalf("%s: %d rows", sql, len(res.Rows))
	}
	out := make([]string, len(res.Rows[0]))
	for i, v := range res.Rows[0] {
		out[i] = string(v)
	}
	return out
}

// TestServerValues stores edge values of every supported type in a real server, reads them back
// in text format under the replication session's settings (the output function pgoutput uses) and
// checks that the mapped JSON decodes to the expected value.
func TestServerValues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := connect(t, ctx)
	execSQL(t, ctx, conn, serverTypes)
	execSQL(t, ctx, conn, sessionGUCs)
	enc := NewEncoder(testOptions, NewCatalog(connect(t, ctx)))

	var allBytes []byte
	for b := 0; b < 256; b++ {
		allBytes = append(allBytes, byte(b))
	}
	n := func(s string) json.Number { return json.Number(s) }
	for i, tc := range []struct {
		typ, literal string
		want         any
	}{
		{"int2", "-32768", n("-32768")},
		{"int2", "32767", n("32767")},
		{"int4", "-2147483648", n("-2147483648")},
		{"int4", "2147483647", n("2147483647")},
		{"int8", "-9223372036854775808", n("-9223372036854775808")},
		{"int8", "9223372036854775807", n("9223372036854775807")},
		{"oid", "4294967295", n("4294967295")},
		{"float8", "'NaN'", "NaN"},
		{"float8", "'Infinity'", "Infinity"},
		{"float8", "'-Infinity'", "-Infinity"},
		{"float8", "1.7976931348623157e308", n("1.7976931348623157e+308")},
		{"float8", "'-0'", n("-0")},
		{"float8", "5e-324", n("5e-324")},
		{"float8", "0.1", n("0.1")},
		{"float4", "'NaN'", "NaN"},
		{"float4", "'-Infinity'", "-Infinity"},
		{"float4", "3.4028235e38", n("3.4028235e+38")},
		{"float4", "1.5", n("1.5")},
		{"numeric", "123456789012345678901234567890.123456789012345678901234567890", "123456789012345678901234567890.123456789012345678901234567890"},
		{"numeric", "'NaN'", "NaN"},
		{"numeric", "'-Infinity'", "-Infinity"},
		{"numeric(10,4)", "1.5", "1.5000"},
		{"bool", "true", true},
		{"bool", "false", false},
		{"json", `'{"k" : "é 😀 \u00e9", "n": [1, 2.5],` + "\n" + ` "z": null}'`, map[string]any{"k": "é 😀 é", "n": []any{n("1"), n("2.5")}, "z": nil}},
		{"jsonb", `'{"b": [true, null], "a": "\u263a \"q\""}'`, map[string]any{"a": "☺ \"q\"", "b": []any{true, nil}}},
		{"jsonb", `'"just a string"'`, "just a string"},
		{"bytea", `'\x` + hex.EncodeToString(allBytes) + `'`, base64.StdEncoding.EncodeToString(allBytes)},
		{"bytea", `''`, ""},
		{"timestamptz", "'2024-01-02 03:04:05.123456+00'", "2024-01-02T03:04:05.123456Z"},
		{"timestamptz", "'2024-01-02 05:04:05+02'", "2024-01-02T03:04:05Z"},
		{"timestamptz", "'0044-03-15 12:00:00.000001+00 BC'", "0044-03-15 12:00:00.000001+00 BC"},
		{"timestamptz", "'infinity'", "infinity"},
		{"timestamptz", "'-infinity'", "-infinity"},
		{"timestamp", "'2024-01-02 03:04:05.000001'", "2024-01-02 03:04:05.000001"},
		{"timestamp", "'4713-01-01 00:00:00 BC'", "4713-01-01 00:00:00 BC"},
		{"date", "'2024-02-29'", "2024-02-29"},
		{"date", "'0001-01-01 BC'", "0001-01-01 BC"},
		{"date", "'infinity'", "infinity"},
		{"time", "'23:59:59.999999'", "23:59:59.999999"},
		{"timetz", "'03:04:05+05:30'", "03:04:05+05:30"},
		{"interval", "'1 year 2 months -3 days 04:05:06.5'", "1 year 2 mons -3 days +04:05:06.5"},
		{"uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"text", `E'tab\there\nline \\ "q" \x01 é 😀'`, "tab\there\nline \\ \"q\" \x01 é 😀"},
		{"varchar(10)", "'abc'", "abc"},
		{"char(4)", "'ab'", "ab  "},
		{"name", "'pg_class'", "pg_class"},
		{"mood", "'so so'", "so so"},
		{"inet", "'192.168.0.1/24'", asText{}},
		{"cidr", "'10.0.0.0/8'", asText{}},
		{"macaddr", "'08:00:2b:01:02:03'", asText{}},
		{"money", "12.34", asText{}},
		{"xml", "'<a>x &amp; y</a>'", asText{}},
		{"tsvector", "'a fat cat'", asText{}},
		{"int4range", "'[1,10)'", "[1,10)"},
		{"point", "'(1.5,2)'", "(1.5,2)"},
		{"box", "'((1,1),(0,0))'", "(1,1),(0,0)"},
		{"int2vector", "'1 2 3'", "1 2 3"},
		{"posint", "5", n("5")},
		{"posint2", "7", n("7")},
		{"int4[]", "'{{1,NULL},{3,4}}'", []any{[]any{n("1"), nil}, []any{n("3"), n("4")}}},
		{"int4[]", "'[0:1]={7,8}'", []any{n("7"), n("8")}},
		{"int4[]", "'{}'", []any{}},
		{"int8[]", "'{{{1}},{{2}}}'", []any{[]any{[]any{n("1")}}, []any{[]any{n("2")}}}},
		{"text[]", `ARRAY['a"b', 'c,d', NULL, 'NULL', '', 'back\slash', ' sp ', '{x}']`, []any{"a\"b", "c,d", nil, "NULL", "", "back\\slash", " sp ", "{x}"}},
		{"text[]", `ARRAY[ARRAY['x', NULL], ARRAY['y z', 'é']]`, []any{[]any{"x", nil}, []any{"y z", "é"}}},
		{"box[]", `ARRAY['((1,1),(0,0))'::box, '((3,3),(2,2))'::box, NULL]`, []any{"(1,1),(0,0)", "(3,3),(2,2)", nil}},
		{"float8[]", `ARRAY['NaN', 'Infinity', -1.5]::float8[]`, []any{"NaN", "Infinity", n("-1.5")}},
		{"numeric[]", `ARRAY[1.50, 'NaN']::numeric[]`, []any{"1.50", "NaN"}},
		{"bool[]", `'{t,f,NULL}'`, []any{true, false, nil}},
		{"bytea[]", `ARRAY['\x00ff'::bytea, NULL]`, []any{"AP8=", nil}},
		{"jsonb[]", `ARRAY['{"a": [1, "x,y"]}'::jsonb, 'null'::jsonb, NULL]`, []any{map[string]any{"a": []any{n("1"), "x,y"}}, nil, nil}},
		{"timestamptz[]", `ARRAY['2024-01-02 03:04:05.5+00'::timestamptz]`, []any{"2024-01-02T03:04:05.5Z"}},
		{"date[]", `ARRAY['2024-01-02'::date, 'infinity']`, []any{"2024-01-02", "infinity"}},
		{"uuid[]", `ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid]`, []any{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}},
		{"posint[]", `ARRAY[1, NULL, 3]::posint[]`, []any{n("1"), nil, n("3")}},
		{"mood[]", `ARRAY['sad', 'so so', NULL]::mood[]`, []any{"sad", "so so", nil}},
		{"intlist", `'{1,2}'`, []any{n("1"), n("2")}},
		{"intlist[]", `'{"{1,2}","{}",NULL}'`, []any{[]any{n("1"), n("2")}, []any{}, nil}},
	} {
		t.Run(fmt.Sprintf("%d_%s", i, tc.typ), func(t *testing.T) {
			table := "v" + strconv.Itoa(i)
			execSQL(t, ctx, conn, fmt.Sprintf("CREATE TABLE %[1]s (v %[2]s); INSERT INTO %[1]s VALUES (%[3]s)", table, tc.typ, tc.literal))
			// A text-format result column is printed by the type's output function, as pgoutput
			// prints tuple data. (v::text is not always the same: bool casts to "true"/"false",
			// and char(n) loses its padding.)
			row := queryRow(t, ctx, conn, fmt.Sprintf("SELECT v, pg_typeof(v)::oid FROM %s", table))
			oid, err := strconv.ParseUint(row[1], 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			w, err := enc.writerFor(ctx, uint32(oid))
			if err != nil {
				t.Fatal(err)
			}
			out, err := w(nil, []byte(row[0]))
			if err != nil {
				t.Fatalf("text %q: %v", row[0], err)
			}
			want := tc.want
			if _, ok := want.(asText); ok {
				want = row[0]
			}
			dec := json.NewDecoder(strings.NewReader(string(out)))
			dec.UseNumber()
			var got any
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("text %q: JSON %s: %v", row[0], out, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("text %q: JSON %s decodes to %#v, want %#v", row[0], out, got, want)
			}
		})
	}

	// Escape-format bytea output maps to the same base64.
	execSQL(t, ctx, conn, "SET bytea_output = escape")
	esc := queryRow(t, ctx, conn, `SELECT '\x`+hex.EncodeToString(allBytes)+`'::bytea`)[0]
	out, err := writeBytea(nil, []byte(esc))
	if err != nil {
		t.Fatalf("escape bytea %q: %v", esc, err)
	}
	if want := `"` + base64.StdEncoding.EncodeToString(allBytes) + `"`; string(out) != want {
		t.Errorf("escape bytea: got %s, want %s", out, want)
	}
}

func TestNewCatalog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := connect(t, ctx)
	execSQL(t, ctx, conn, `CREATE SCHEMA cat;
CREATE TYPE cat.color AS ENUM ('red', 'blue');
CREATE DOMAIN cat.small AS int2;
CREATE DOMAIN cat.tiny AS cat.small CHECK (VALUE < 10);
CREATE TABLE cat.pk2 (a int, b text, c int, PRIMARY KEY (b, a));
CREATE TABLE cat.nopk (a int);`)
	oid := func(sql string) uint32 {
		v, err := strconv.ParseUint(queryRow(t, ctx, conn, sql)[0], 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		return uint32(v)
	}
	colorOID := oid(`SELECT 'cat.color'::regtype::oid`)
	smallOID := oid(`SELECT 'cat.small'::regtype::oid`)
	tinyOID := oid(`SELECT 'cat.tiny'::regtype::oid`)
	tinyArrOID := oid(`SELECT 'cat.tiny[]'::regtype::oid`)

	cat := NewCatalog(connect(t, ctx))
	got, err := cat.ResolveType(ctx, colorOID)
	if err != nil || got != (TypeInfo{OID: colorOID, Name: "color", Type: 'e', Category: 'E', Delim: ','}) {
		t.Errorf("enum: %+v, %v", got, err)
	}
	got, err = cat.ResolveType(ctx, tinyOID)
	if err != nil || got != (TypeInfo{OID: tinyOID, Name: "tiny", Type: 'd', Category: 'N', BaseOID: smallOID, Delim: ','}) {
		t.Errorf("domain: %+v, %v", got, err)
	}
	got, err = cat.ResolveType(ctx, tinyArrOID)
	if err != nil || !got.IsArray() || got.ElemOID != tinyOID || got.Name != "_tiny" {
		t.Errorf("array of domain: %+v, %v", got, err)
	}
	if _, err := cat.ResolveType(ctx, 4000000000); !errors.Is(err, ErrUnknownType) {
		t.Errorf("unknown oid: %v", err)
	}

	// Answers are cached until invalidated.
	execSQL(t, ctx, conn, "DROP TYPE cat.color")
	if got, err := cat.ResolveType(ctx, colorOID); err != nil || got.Name != "color" {
		t.Errorf("cached enum: %+v, %v", got, err)
	}
	cat.(Invalidator).InvalidateType(colorOID)
	if _, err := cat.ResolveType(ctx, colorOID); !errors.Is(err, ErrUnknownType) {
		t.Errorf("dropped enum after invalidation: %v", err)
	}

	pk, err := cat.PrimaryKey(ctx, oid(`SELECT 'cat.pk2'::regclass::oid`))
	if err != nil || !reflect.DeepEqual(pk, []string{"b", "a"}) {
		t.Errorf("primary key: %q, %v", pk, err)
	}
	nopk := oid(`SELECT 'cat.nopk'::regclass::oid`)
	pk, err = cat.PrimaryKey(ctx, nopk)
	if err != nil || pk != nil {
		t.Errorf("no primary key: %q, %v", pk, err)
	}
	execSQL(t, ctx, conn, "ALTER TABLE cat.nopk ADD PRIMARY KEY (a)")
	cat.(Invalidator).InvalidateRelation(nopk)
	pk, err = cat.PrimaryKey(ctx, nopk)
	if err != nil || !reflect.DeepEqual(pk, []string{"a"}) {
		t.Errorf("added primary key: %q, %v", pk, err)
	}

	// An Encoder resolves a relation's domain, enum-array and domain-array columns through it.
	execSQL(t, ctx, conn, "CREATE TYPE cat.color AS ENUM ('red', 'blue')")
	colorArrOID := oid(`SELECT 'cat.color[]'::regtype::oid`)
	e := NewEncoder(testOptions, cat)
	mustRelation(t, e, 1, 'd', col("a", tinyOID, true), col("b", colorArrOID, false), col("c", tinyArrOID, false))
	ev, err := e.Insert(newTx(), testChange, &walparse.Insert{RelationID: 1, New: tup(txt("3"), txt("{red,NULL}"), txt("{1,2}"))})
	if err != nil {
		t.Fatal(err)
	}
	checkEvent(t, ev, `{"id":"0/16B37A0/0","op":"c","before":null,"after":{"a":3,"b":["red",null],"c":[1,2]},`+src, `{"a":3}`)
}
