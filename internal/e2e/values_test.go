package e2e

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestValueMapping streams one row holding every mapped type and compares each JSON value with
// the mapping docs/format.md promises.
func TestValueMapping(t *testing.T) {
	db := newDB(t)
	exec1(t, db, `CREATE TYPE mood AS ENUM ('sad', 'happy');
		CREATE DOMAIN posint AS int CHECK (VALUE > 0);
		CREATE DOMAIN label AS text;
		CREATE TABLE v (
			id serial PRIMARY KEY,
			i2 smallint, i4 int, i8 bigint, o oid,
			f4 real, f8 double precision, f8nan double precision, f8inf double precision, f8ninf double precision,
			num numeric, numnan numeric, b boolean, bf boolean,
			j json, jb jsonb, by bytea,
			d date, dinf date, ts timestamp, tstz timestamptz, tstzinf timestamptz, tstzbc timestamptz,
			tm time, tmtz timetz, iv interval,
			u uuid, tx text, vc varchar(10), ch char(5), e mood, ip inet, cd cidr, mac macaddr, m money,
			ia int[], ta text[], na numeric[], ea mood[], da posint[], ba box[], dom posint, lab label, nul text,
			pt point, r int4range
		)`)
	r := startPipeline(t, db, runOpts{})
	r.waitStreaming()
	exec1(t, db, `INSERT INTO v (i2, i4, i8, o, f4, f8, f8nan, f8inf, f8ninf, num, numnan, b, bf, j, jb, by,
			d, dinf, ts, tstz, tstzinf, tstzbc, tm, tmtz, iv, u, tx, vc, ch, e, ip, cd, mac, m,
			ia, ta, na, ea, da, ba, dom, lab, nul, pt, r)
		VALUES (-32768, 2147483647, -9223372036854775808, 4294967295,
			1.5, 0.1, 'NaN', 'Infinity', '-Infinity',
			'12345678901234567890.123456789000', 'NaN', true, false,
			'{"a": [1, "x"], "ü": null}', '{"b": {"c": 2}}', '\x00ff10',
			'2024-02-29', 'infinity', '2024-01-02 03:04:05.5', '2024-01-02 03:04:05.123456+02', '-infinity', '0044-03-15 12:00:00+00 BC',
			'13:14:15.25', '13:14:15+02', '1 year 2 mons 3 days 04:05:06.7',
			'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', E'tab\there "quoted" \\ back \u00e9 \u2603 line\nnext', 'short', 'ab', 'happy',
			'10.1.2.3/8', '10.0.0.0/8', '08:00:2b:01:02:03', '1234.5',
			'{{1,2},{3,NULL}}', ARRAY['a b', 'c"d', NULL, 'NULL', E'back\\slash', '{x}'], '{1.10,NaN}', '{sad,happy}', '{1,2}',
			ARRAY[box '((0,0),(1,1))', box '((2,2),(3,3))'], 7, 'lbl', NULL, '(1.5,2)', '[1,10)')`)
	evs := waitEvents(t, r.path, 60*time.Second, atLeast(1))
	got := map[string]json.RawMessage{}
	if err := json.Unmarshal(evs[0].After, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"id": `1`, "i2": `-32768`, "i4": `2147483647`, "i8": `-9223372036854775808`, "o": `4294967295`,
		"f4": `1.5`, "f8": `0.1`, "f8nan": `"NaN"`, "f8inf": `"Infinity"`, "f8ninf": `"-Infinity"`,
		"num": `"12345678901234567890.123456789000"`, "numnan": `"NaN"`, "b": `true`, "bf": `false`,
		"j": `{"a": [1, "x"], "ü": null}`, "jb": `{"b": {"c": 2}}`, "by": `"AP8Q"`,
		"d": `"2024-02-29"`, "dinf": `"infinity"`, "ts": `"2024-01-02 03:04:05.5"`,
		"tstz": `"2024-01-02T01:04:05.123456Z"`, "tstzinf": `"-infinity"`, "tstzbc": `"0044-03-15 12:00:00+00 BC"`,
		"tm": `"13:14:15.25"`, "tmtz": `"13:14:15+02"`, "iv": `"1 year 2 mons 3 days 04:05:06.7"`,
		"u":  `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`,
		"tx": `"tab\there \"quoted\" \\ back é ☃ line\nnext"`,
		"vc": `"short"`, "ch": `"ab   "`, "e": `"happy"`, "ip": `"10.1.2.3/8"`, "cd": `"10.0.0.0/8"`,
		"mac": `"08:00:2b:01:02:03"`, "m": `"$1,234.50"`,
		"ia": `[[1,2],[3,null]]`, "ta": `["a b","c\"d",null,"NULL","back\\slash","{x}"]`, "na": `["1.10","NaN"]`,
		"ea": `["sad","happy"]`, "da": `[1,2]`, "ba": `["(1,1),(0,0)","(3,3),(2,2)"]`, "dom": `7`, "lab": `"lbl"`,
		"nul": `null`, "pt": `"(1.5,2)"`, "r": `"[1,10)"`,
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: missing", k)
			continue
		}
		if !jsonEqual(t, g, []byte(w)) {
			t.Errorf("%s = %s, want %s", k, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("after has %d columns, want %d", len(got), len(want))
	}
	// json is embedded as JSON (not a string), compacted so that an event stays on one line.
	if !strings.Contains(evs[0].Raw, `"j":{"a":[1,"x"],"ü":null}`) {
		t.Errorf("json column not embedded as compact JSON: %s", evs[0].Raw)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	da := json.NewDecoder(bytes.NewReader(a))
	da.UseNumber()
	db := json.NewDecoder(bytes.NewReader(b))
	db.UseNumber()
	if err := da.Decode(&x); err != nil {
		t.Errorf("invalid JSON %s: %v", a, err)
		return false
	}
	if err := db.Decode(&y); err != nil {
		t.Fatalf("bad expectation %s: %v", b, err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
