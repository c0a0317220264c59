package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/pgstream/pgstream/walparse"
	"strings"
	"testing"
	"unicode/utf8"
)

// writerOf resolves oid the way a Relation column is resolved.
func writerOf(t testing.TB, oid uint32) valueWriter {
	t.Helper()
	e := NewEncoder(testOptions, newFakeCatalog())
	w, err := e.writerFor(context.Background(), oid)
	if err != nil {
		t.Fatalf("writerFor(%d): %v", oid, err)
	}
	return w
}

func TestValueMapping(t *testing.T) {
	const bad = "\x00error" // marks a case that must fail with ErrValue
	for _, tc := range []struct {
		oid  uint32
		in   string
		want string
	}{
		{oidInt2, "-32768", `-32768`},
		{oidInt4, "2147483647", `2147483647`},
		{oidInt8, "-9223372036854775808", `-9223372036854775808`},
		{oidInt8, "0", `0`},
		{oidOID, "4294967295", `4294967295`},
		{oidInt4, "", bad},
		{oidInt4, "-", bad},
		{oidInt4, "01", bad},
		{oidInt4, "1.5", bad},
		{oidInt4, " 1", bad},
		{oidFloat8, "1.5", `1.5`},
		{oidFloat8, "-0", `-0`},
		{oidFloat8, "1e+308", `1e+308`},
		{oidFloat4, "1.17549435e-38", `1.17549435e-38`},
		{oidFloat8, "NaN", `"NaN"`},
		{oidFloat8, "Infinity", `"Infinity"`},
		{oidFloat4, "-Infinity", `"-Infinity"`},
		{oidFloat8, "nan", bad},
		{oidFloat8, ".5", bad},
		{oidFloat8, "1.", bad},
		{oidFloat8, "1e", bad},
		{oidNumeric, "123456789012345678901234567890.000000000001", `"123456789012345678901234567890.000000000001"`},
		{oidNumeric, "NaN", `"NaN"`},
		{oidNumeric, "-Infinity", `"-Infinity"`},
		{oidBool, "t", `true`},
		{oidBool, "f", `false`},
		{oidBool, "true", bad},
		{oidJSON, `{"a" : [1, 2],` + "\n" + ` "b": "x y\u00e9"}`, `{"a":[1,2],"b":"x y\u00e9"}`},
		{oidJSONB, `{"a": "\" , :", "b": null}`, `{"a":"\" , :","b":null}`},
		{oidJSONB, `"str"`, `"str"`},
		{oidJSON, "{\"a\":\"\xff\"}", `{"a":"\ufffd"}`},
		{oidJSON, `{"a":`, bad},
		{oidBytea, `\x`, `""`},
		{oidBytea, `\x00ff10`, `"AP8Q"`},
		{oidBytea, `\xDEADBEEF`, `"3q2+7w=="`},
		{oidBytea, `\x0`, bad},
		{oidBytea, `\xzz`, bad},
		{oidBytea, `ab\\c\000\377`, `"YWJcYwD/"`},
		{oidBytea, `a\9`, bad},
		{oidBytea, `a\`, bad},
		{oidTimestamptz, "2024-01-02 03:04:05.123456+00", `"2024-01-02T03:04:05.123456Z"`},
		{oidTimestamptz, "2024-01-02 03:04:05+00", `"2024-01-02T03:04:05Z"`},
		{oidTimestamptz, "2024-01-02 03:04:05+05:30", `"2024-01-02T03:04:05+05:30"`},
		{oidTimestamptz, "2024-01-02 03:04:05-08", `"2024-01-02T03:04:05-08:00"`},
		{oidTimestamptz, "infinity", `"infinity"`},
		{oidTimestamptz, "-infinity", `"-infinity"`},
		{oidTimestamptz, "0044-03-15 12:00:00+00 BC", `"0044-03-15 12:00:00+00 BC"`},
		{oidTimestamptz, "12345-01-01 00:00:00+00", `"12345-01-01T00:00:00Z"`},
		{1114, "2024-01-02 03:04:05.5", `"2024-01-02 03:04:05.5"`},                   // timestamp
		{1082, "2024-01-02", `"2024-01-02"`},                                         // date
		{1082, "4713-01-01 BC", `"4713-01-01 BC"`},                                   // date
		{1083, "03:04:05.000001", `"03:04:05.000001"`},                               // time
		{1266, "03:04:05+02", `"03:04:05+02"`},                                       // timetz
		{1186, "1 year 2 mons -3 days 04:05:06", `"1 year 2 mons -3 days 04:05:06"`}, // interval
		{2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
		{oidText, "tab\there \"q\" back\\slash \x01 é 😀", `"tab\there \"q\" back\\slash \u0001 é 😀"`},
		{oidText, "bad \xc3\x28 utf8", `"bad \ufffd( utf8"`},
		{oidVarchar, "", `""`},
		{790, "$1,000.00", `"$1,000.00"`},           // money
		{869, "192.168.0.1/24", `"192.168.0.1/24"`}, // inet
		{3904, "[1,10)", `"[1,10)"`},                // int4range
		{603, "(1,1),(0,0)", `"(1,1),(0,0)"`},       // box
		{22, "1 2 3", `"1 2 3"`},                    // int2vector is not an array
		{oidMood, "happy", `"happy"`},
		{oidMyInt, "12", `12`},
		{oidMyInt, "x", bad},
		{oidDomOfDom, "-5", `-5`},
	} {
		w := writerOf(t, tc.oid)
		got, err := w(nil, []byte(tc.in))
		if tc.want == bad {
			if !errors.Is(err, ErrValue) {
				t.Errorf("oid %d %q: got %s, %v; want ErrValue", tc.oid, tc.in, got, err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("oid %d %q: got %s, %v; want %s", tc.oid, tc.in, got, err, tc.want)
			continue
		}
		if !json.Valid(got) {
			t.Errorf("oid %d %q: invalid JSON %s", tc.oid, tc.in, got)
		}
	}
}

func TestArrayMapping(t *testing.T) {
	const bad = "\x00error"
	for _, tc := range []struct {
		oid  uint32
		in   string
		want string
	}{
		{oidInt4Arr, "{}", `[]`},
		{oidInt4Arr, "{1,2,3}", `[1,2,3]`},
		{oidInt4Arr, "{{1,2},{3,NULL}}", `[[1,2],[3,null]]`},
		{oidInt4Arr, "{{{1},{2}},{{3},{4}}}", `[[[1],[2]],[[3],[4]]]`},
		{oidInt4Arr, "[0:1]={7,8}", `[7,8]`},
		{oidInt4Arr, "[1:2][-1:0]={{1,2},{3,4}}", `[[1,2],[3,4]]`},
		{oidInt4Arr, "{ 1 , 2 }", `[1,2]`},
		{oidInt4Arr, "{null,NuLl}", `[null,null]`},
		{oidInt4Arr, "{1,x}", bad},
		{oidInt4Arr, "{1,2", bad},
		{oidInt4Arr, "{1,,2}", bad},
		{oidInt4Arr, "{1,2}}", bad},
		{oidInt4Arr, "[0:1]{1}", bad},
		{oidInt4Arr, "1,2", bad},
		{oidInt4Arr, "{{{{{{{1}}}}}}}", bad}, // deeper than MAXDIM
		{oidTextArr, `{a,"b c","d,e","f\"g","h\\i","NULL",NULL,""}`, `["a","b c","d,e","f\"g","h\\i","NULL",null,""]`},
		{oidTextArr, `{"x\y"}`, `["xy"]`},
		{oidTextArr, `{"unterminated}`, bad},
		{oidTextArr, `{"a"b}`, bad},
		{oidTextArr, "{\"\xff\"}", `["\ufffd"]`},
		{oidBoxArr, "{(1,1),(0,0);(3,3),(2,2)}", `["(1,1),(0,0)","(3,3),(2,2)"]`},
		{oidBoxArr, "{(1,1),(0,0);NULL}", `["(1,1),(0,0)",null]`},
		{oidJSONBArr, `{"{\"a\": 1}","[1, 2]",NULL}`, `[{"a":1},[1,2],null]`},
		{oidByteaArr, `{"\\x00ff",NULL}`, `["AP8=",null]`},
		{oidFloat8Arr, "{NaN,Infinity,-1.5}", `["NaN","Infinity",-1.5]`},
		{oidNumericArr, "{1.50,NaN}", `["1.50","NaN"]`},
		{1115, `{"2024-01-02 03:04:05"}`, `["2024-01-02 03:04:05"]`},     // timestamp[]
		{1185, `{"2024-01-02 03:04:05+00"}`, `["2024-01-02T03:04:05Z"]`}, // timestamptz[]
		{oidMyIntArr, "{1,NULL}", `[1,null]`},
		{oidMoodArr, `{sad,"so so"}`, `["sad","so so"]`},
		{oidDomArrArr, `{"{1,2}","{}"}`, `[[1,2],[]]`},
	} {
		w := writerOf(t, tc.oid)
		got, err := w(nil, []byte(tc.in))
		if tc.want == bad {
			if !errors.Is(err, ErrValue) {
				t.Errorf("oid %d %q: got %s, %v; want ErrValue", tc.oid, tc.in, got, err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("oid %d %q: got %s, %v; want %s", tc.oid, tc.in, got, err, tc.want)
			continue
		}
		if !json.Valid(got) {
			t.Errorf("oid %d %q: invalid JSON %s", tc.oid, tc.in, got)
		}
	}
}

// TestAppendStringMatchesEncodingJSON checks that strings decode to what encoding/json makes of the
// same bytes, including control characters and invalid UTF-8.
func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	inputs := []string{"", "plain", "\"\\/", "\x00\x01\x1f\x7f", "\b\f\n\r\t", "é😀\u2028\u2029", "\xff", "a\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80", "<&>"}
	var all []byte
	for b := 0; b < 256; b++ {
		all = append(all, byte(b))
	}
	inputs = append(inputs, string(all))
	for _, in := range inputs {
		got := appendString(nil, []byte(in))
		if !json.Valid(got) || !utf8.Valid(got) {
			t.Errorf("%q: invalid output %q", in, got)
			continue
		}
		var dec string
		if err := json.Unmarshal(got, &dec); err != nil {
			t.Fatal(err)
		}
		ref, _ := json.Marshal(in)
		var want string
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		if dec != want {
			t.Errorf("%q: decodes to %q, encoding/json gives %q", in, dec, want)
		}
	}
	// The common case is one copy of the input.
	in := []byte("no escaping needed here")
	if got := appendString(nil, in); !bytes.Equal(got[1:len(got)-1], in) {
		t.Errorf("got %s", got)
	}
}

// fuzzOIDs are the types the fuzz target picks from: every builtin plus the fake catalog's.
func fuzzOIDs() []uint32 {
	oids := make([]uint32, 0, len(builtinTypes)+8)
	for oid := range builtinTypes {
		oids = append(oids, oid)
	}
	for oid := range newFakeCatalog().types {
		if oid != oidCycle {
			oids = append(oids, oid)
		}
	}
	// Map iteration order is random: sort so a fuzz input always picks the same type.
	for i := 1; i < len(oids); i++ {
		for j := i; j > 0 && oids[j] < oids[j-1]; j-- {
			oids[j], oids[j-1] = oids[j-1], oids[j]
		}
	}
	return oids
}

// FuzzColumnValue feeds arbitrary column text to the writer of an arbitrary type and checks that
// the result is valid JSON or an ErrValue, never a panic, through a full insert envelope.
func FuzzColumnValue(f *testing.F) {
	oids := fuzzOIDs()
	index := func(oid uint32) uint16 {
		for i, o := range oids {
			if o == oid {
				return uint16(i)
			}
		}
		f.Fatalf("oid %d not in fuzz list", oid)
		return 0
	}
	for _, s := range []struct {
		oid uint32
		in  string
	}{
		{oidInt4, "-12"}, {oidFloat8, "1e-7"}, {oidJSONB, `{"a": [1, "\u00e9"]}`}, {oidBytea, `\xdeadbeef`},
		{oidBytea, `a\\b\001`}, {oidTimestamptz, "2024-01-02 03:04:05.1+00"}, {oidText, "x\x00\xff"},
		{oidInt4Arr, "[1:2]={{1,NULL},{3,4}}"}, {oidTextArr, `{"a\"b",NULL,c}`}, {oidBoxArr, "{(1,1),(0,0);(2,2),(1,1)}"},
		{oidMyIntArr, "{1,2}"}, {oidMoodArr, `{"so so"}`}, {oidDomArrArr, `{"{1}"}`}, {oidJSONBArr, `{"{\"a\":1}"}`},
	} {
		f.Add(index(s.oid), []byte(s.in))
	}
	cat := newFakeCatalog()
	f.Fuzz(func(t *testing.T, i uint16, data []byte) {
		oid := oids[int(i)%len(oids)]
		e := NewEncoder(testOptions, cat)
		mustRelation(t, e, 1, walparse.ReplicaIdentityDefault, col("id", oidInt4, true), col("v", oid, true))
		ev, err := e.Insert(newTx(), testChange, &walparse.Insert{RelationID: 1, New: tup(txt("1"), walparse.TupleColumn{Kind: walparse.TupleText, Data: data})})
		if err != nil {
			if !errors.Is(err, ErrValue) {
				t.Fatalf("oid %d %q: error %v is not ErrValue", oid, data, err)
			}
			return
		}
		if !json.Valid(ev.Value) || !utf8.Valid(ev.Value) || !json.Valid(ev.Key) {
			t.Fatalf("oid %d %q: invalid JSON %s / %s", oid, data, ev.Value, ev.Key)
		}
		if bytes.ContainsAny(ev.Value, "\n\r") {
			t.Fatalf("oid %d %q: newline in value %s", oid, data, ev.Value)
		}
		if strings.Count(string(ev.Value), `"op":"c"`) < 1 {
			t.Fatalf("envelope lost: %s", ev.Value)
		}
	})
}
