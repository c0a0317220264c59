package walparse_test

import (
	"strings"
	"testing"

	"github.com/pgstream/pgstream/walparse"
)

// A row shaped like a typical table: id, short text, a longer text, a timestamp, a null.
var benchRow = []col{
	{walparse.TupleText, "123456"},
	{walparse.TupleText, "alice@example.com"},
	{walparse.TupleText, strings.Repeat("lorem ipsum ", 10)},
	{walparse.TupleText, "2024-01-02 03:04:05.123456+00"},
	{walparse.TupleNull, ""},
	{walparse.TupleUnchangedToast, ""},
}

var (
	benchInsert = frame(walparse.TypeInsert).u32(16384).u8('N').tuple(benchRow...).bytes()
	benchUpdate = frame(walparse.TypeUpdate).u32(16384).u8('O').tuple(benchRow...).u8('N').tuple(benchRow...).bytes()
	benchDelete = frame(walparse.TypeDelete).u32(16384).u8('K').tuple(benchRow[0], col{'n', ""}, col{'n', ""}, col{'n', ""}, col{'n', ""}, col{'n', ""}).bytes()
	benchTrunc  = frame(walparse.TypeTruncate).i32(3).u8(0).u32(1).u32(2).u32(3).bytes()
	benchMsg    = frame(walparse.TypeMessage).u8(1).u64(0x300).str("audit").data(strings.Repeat("x", 64)).bytes()
	benchBegin  = beginFrame(0x100, 700)
	benchCommit = commitFrame(0x100)
)

// decodeOK decodes f and fails on error; it is shared by the benchmarks and the allocation test.
func decodeOK(tb testing.TB, d *walparse.Decoder, f []byte) {
	if _, err := d.Decode(f); err != nil {
		tb.Fatal(err)
	}
}

func TestZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	cases := []struct {
		name   string
		frames [][]byte
		setup  [][]byte
	}{
		{"BeginCommit", [][]byte{benchBegin, benchCommit}, nil},
		{"Insert", [][]byte{benchInsert}, inTx},
		{"Update", [][]byte{benchUpdate}, inTx},
		{"Delete", [][]byte{benchDelete}, inTx},
		{"Truncate", [][]byte{benchTrunc}, inTx},
		{"Message", [][]byte{benchMsg}, inTx},
		{"MixedInsertUpdate", [][]byte{benchInsert, benchUpdate, benchDelete, benchInsert}, inTx},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDecoder(t, v1, tc.setup)
			for _, f := range tc.frames { // grow the reused slices
				decodeOK(t, d, f)
			}
			allocs := testing.AllocsPerRun(200, func() {
				for _, f := range tc.frames {
					decodeOK(t, d, f)
				}
			})
			if allocs > 0 {
				t.Fatalf("%s: %v allocations per run, want 0", tc.name, allocs)
			}
		})
	}
}

func benchDecode(b *testing.B, setup [][]byte, frames ...[]byte) {
	d := newDecoder(b, v1, setup)
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range frames {
			decodeOK(b, d, f)
		}
	}
}

func BenchmarkDecodeInsert(b *testing.B) { benchDecode(b, inTx, benchInsert) }
func BenchmarkDecodeUpdate(b *testing.B) { benchDecode(b, inTx, benchUpdate) }
func BenchmarkDecodeDelete(b *testing.B) { benchDecode(b, inTx, benchDelete) }

// Reset closes the transaction each Begin opens (it is part of the measured time).
func BenchmarkDecodeBegin(b *testing.B) {
	d := newDecoder(b, v1, nil)
	b.SetBytes(int64(len(benchBegin)))
	b.ReportAllocs()
	for b.Loop() {
		decodeOK(b, d, benchBegin)
		d.Reset()
	}
}

// A Commit needs an open Begin, and stopping the timer around each Begin would cost more than
// the decoding itself: each op decodes a Begin and its Commit.
func BenchmarkDecodeCommit(b *testing.B) { benchDecode(b, nil, benchBegin, benchCommit) }

func BenchmarkDecodeTruncate(b *testing.B) { benchDecode(b, inTx, benchTrunc) }
func BenchmarkDecodeMessage(b *testing.B)  { benchDecode(b, inTx, benchMsg) }
