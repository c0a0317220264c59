package events

import (
	"bytes"
	"testing"

	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

// sourceOf returns an envelope's source object up to its txId.
func sourceOf(t *testing.T, v []byte) []byte {
	t.Helper()
	i, j := bytes.Index(v, []byte(`"source":`)), bytes.Index(v, []byte(`,"txId":`))
	if i < 0 || j < i {
		t.Fatalf("no source in %s", v)
	}
	return v[i:j]
}

// TestMarkersQuoteLikeEvents checks that a marker and a change event of the same database carry
// byte-identical source.db, for names that encoding/json escapes differently.
func TestMarkersQuoteLikeEvents(t *testing.T) {
	for _, db := range []string{"app", "a<b>&c", "\b\f", "x\u2028y\u2029", "q\"\\\t\x01\xff"} {
		opts := Options{Database: db, Now: testOptions.Now}
		msg, err := NewEncoder(opts, nil).Message(nil, &walparse.LogicalMessage{Prefix: []byte("p")})
		if err != nil {
			t.Fatal(err)
		}
		m := NewMarkers(opts)
		for _, ev := range []sinks.Event{m.Begin(newTx(), testChange), m.End(newTx(), testCommit, 2)} {
			if got, want := sourceOf(t, ev.Value), sourceOf(t, msg.Value); !bytes.Equal(got, want) {
				t.Errorf("database %q: %c marker source %s, change events %s", db, ev.Op, got, want)
			}
		}
	}
}

// TestMarkersSteadyStateAllocations checks that markers reuse their buffer, as change events do.
func TestMarkersSteadyStateAllocations(t *testing.T) {
	m := NewMarkers(testOptions)
	tx := newTx()
	if n := testing.AllocsPerRun(100, func() {
		m.Begin(tx, testChange)
		m.End(tx, testCommit, 3)
	}); n != 0 {
		t.Errorf("Begin and End: %v allocs per run", n)
	}
}
