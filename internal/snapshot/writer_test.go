package snapshot

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/events"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

// Builtin type OIDs (src/include/catalog/pg_type.dat).
const (
	oidInt4  = 23
	oidText  = 25
	oidBytea = 17
)

// newTestWriter returns a chunkWriter of relation 99 (id int4 key, t text, b bytea) that collects
// the events' values in *got.
func newTestWriter(t testing.TB, got *[]string) *chunkWriter {
	t.Helper()
	enc := events.NewEncoder(events.Options{Database: "db", Now: fixedNow}, nil)
	err := enc.Relation(context.Background(), &walparse.Relation{RelationID: 99, Namespace: "public", Name: "t",
		ReplicaIdentity: walparse.ReplicaIdentityDefault, Columns: []walparse.RelationColumn{
			{Flags: walparse.ColumnFlagKey, Name: "id", TypeOID: oidInt4, TypeMod: -1},
			{Name: "t", TypeOID: oidText, TypeMod: -1},
			{Name: "b", TypeOID: oidBytea, TypeMod: -1},
		}})
	if err != nil {
		t.Fatal(err)
	}
	return &chunkWriter{
		enc:   enc,
		t:     &checkpoint.TableSnapshot{Gen: testGen, OID: 99, Schema: "public", Table: "t", Pages: 1, ChunkPages: 1},
		names: []string{"ctid", "xmin", "tableoid", "id", "t", "b"},
		emit: func(ev sinks.Event) error {
			if got != nil {
				*got = append(*got, string(ev.Value))
			}
			return nil
		},
	}
}

// copyOutput is a COPY of three rows of the test relation, with escapes and a long row.
var copyOutput = "(0,1)\t700\t99\t1\ttab\\there\t\\\\x00ff\n" +
	"(0,2)\t701\t99\t2\t\\N\t\\N\n" +
	"(4294967295,65535)\t4294967295\t99\t3\t" + strings.Repeat("long é ", 300) + "\t\\\\x\n"

// TestChunkWriterSplits feeds the same COPY output in payloads cut at every place (and at random
// places): the events do not depend on where payloads end.
func TestChunkWriterSplits(t *testing.T) {
	var want []string
	w := newTestWriter(t, &want)
	if n, err := w.Write([]byte(copyOutput)); err != nil || n != len(copyOutput) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if len(want) != 3 || len(w.carry) != 0 || w.rows != 3 {
		t.Fatalf("%d events, %d rows, carry %q", len(want), w.rows, w.carry)
	}
	for _, frag := range []string{
		`{"id":"1/23456780/r/99/0.1/700","op":"r","before":null,"after":{"id":1,"t":"tab\there","b":"AP8="}`,
		`{"id":"1/23456780/r/99/0.2/701","op":"r","before":null,"after":{"id":2,"t":null,"b":null}`,
		`{"id":"1/23456780/r/99/4294967295.65535/4294967295","op":"r"`,
	} {
		if !slices.ContainsFunc(want, func(v string) bool { return strings.HasPrefix(v, frag) }) {
			t.Errorf("no event starting %s in %.200q", frag, want)
		}
	}

	check := func(name string, cuts []int) {
		t.Helper()
		var got []string
		w := newTestWriter(t, &got)
		prev := 0
		for _, c := range append(cuts, len(copyOutput)) {
			if n, err := w.Write([]byte(copyOutput[prev:c])); err != nil || n != c-prev {
				t.Fatalf("%s: Write = %d, %v", name, n, err)
			}
			prev = c
		}
		if !slices.Equal(got, want) || len(w.carry) != 0 {
			t.Errorf("%s: %d events, carry %d bytes", name, len(got), len(w.carry))
		}
	}
	for cut := 0; cut <= len(copyOutput); cut++ {
		check("one cut", []int{cut})
	}
	var every []int
	for i := 1; i < len(copyOutput); i++ {
		every = append(every, i)
	}
	check("one byte per payload", every)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		cuts := make([]int, rng.IntN(20))
		for i := range cuts {
			cuts[i] = rng.IntN(len(copyOutput) + 1)
		}
		slices.Sort(cuts)
		check("random cuts", cuts)
	}

	// A COPY that stops inside a row leaves it in carry, which ReadChunk reports.
	w = newTestWriter(t, nil)
	if _, err := w.Write([]byte(copyOutput[:len(copyOutput)-3])); err != nil {
		t.Fatal(err)
	}
	if w.rows != 2 || len(w.carry) == 0 {
		t.Errorf("partial row: %d rows, carry %d bytes", w.rows, len(w.carry))
	}
}

func TestChunkWriterErrors(t *testing.T) {
	for _, tc := range []struct {
		name, row string
		want      error
		msg       string
	}{
		{"column count", "(0,1)\t700\t99\t1\tx\n", ErrMalformedRow, `column "b" is missing`},
		{"escape", "(0,1)\t700\t99\t1\tx\\\t\\N\n", ErrMalformedRow, `column "t": backslash at the end`},
		{"ctid", "(0,x)\t700\t99\t1\tx\t\\N\n", ErrMalformedRow, `ctid "(0,x)"`},
		{"ctid offset too large", "(0,65536)\t700\t99\t1\tx\t\\N\n", ErrMalformedRow, `ctid "(0,65536)"`},
		{"null ctid", "\\N\t700\t99\t1\tx\t\\N\n", ErrMalformedRow, `ctid ""`},
		{"xmin", "(0,1)\t4294967296\t99\t1\tx\t\\N\n", ErrMalformedRow, `xmin "4294967296"`},
		{"tableoid", "(0,1)\t700\tx\t1\tx\t\\N\n", ErrMalformedRow, `tableoid "x"`},
		{"value", "(0,1)\t700\t99\tone\tx\t\\N\n", events.ErrValue, `row (0,1)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newTestWriter(t, nil)
			_, err := w.Write([]byte("(0,9)\t1\t99\t9\tok\t\\N\n" + tc.row))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "read public.t chunk 0") {
				t.Errorf("error = %v, want %v with %s", err, tc.want, tc.msg)
			}
			if w.rows != 1 || w.emitFailed {
				t.Errorf("rows %d, emitFailed %v", w.rows, w.emitFailed)
			}
			if _, err2 := w.Write([]byte("(0,3)\t1\t99\t3\tok\t\\N\n")); err2 != err {
				t.Errorf("later Write: %v", err2)
			}
		})
	}

	// An emit error is returned as is.
	w := newTestWriter(t, nil)
	errStop := errors.New("stop")
	w.emit = func(sinks.Event) error { return errStop }
	if _, err := w.Write([]byte(copyOutput)); err != errStop || !w.emitFailed || w.rows != 0 {
		t.Errorf("emit error: %v, emitFailed %v, rows %d", err, w.emitFailed, w.rows)
	}
}

// TestChunkWriterAllocations checks that rows cost no allocations once the buffers have grown,
// whether they arrive one per payload or split across payloads.
func TestChunkWriterAllocations(t *testing.T) {
	w := newTestWriter(t, nil)
	rows := strings.SplitAfter(copyOutput, "\n")[:3]
	payloads := [][]byte{[]byte(rows[0]), []byte(rows[1]), []byte(rows[2][:100]), []byte(rows[2][100:])}
	if n := testing.AllocsPerRun(50, func() {
		for _, p := range payloads {
			if _, err := w.Write(p); err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Errorf("%v allocs per 3 rows", n)
	}
}

func TestParseCTID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"(0,1)", 1, true},
		{"(12,3)", 12<<16 | 3, true},
		{"(4294967295,65535)", 4294967295<<16 | 65535, true},
		{"(4294967296,1)", 0, false},
		{"(1,65536)", 0, false},
		{"(1,)", 0, false},
		{"(,1)", 0, false},
		{"(1 ,2)", 0, false},
		{"1,2", 0, false},
		{"(12345678901,1)", 0, false},
		{"", 0, false},
	} {
		got, ok := parseCTID([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseCTID(%q) = %d, %v, want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
