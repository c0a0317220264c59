package walparse_test

import (
	"encoding/binary"

	"github.com/pgstream/pgstream/walparse"
)

// fb builds pgoutput frames field by field, in wire order.
type fb struct{ b []byte }

func frame(t walparse.MessageType) *fb { return &fb{b: []byte{byte(t)}} }

func (f *fb) u8(v byte) *fb     { f.b = append(f.b, v); return f }
func (f *fb) u16(v uint16) *fb  { f.b = binary.BigEndian.AppendUint16(f.b, v); return f }
func (f *fb) u32(v uint32) *fb  { f.b = binary.BigEndian.AppendUint32(f.b, v); return f }
func (f *fb) i32(v int32) *fb   { return f.u32(uint32(v)) }
func (f *fb) u64(v uint64) *fb  { f.b = binary.BigEndian.AppendUint64(f.b, v); return f }
func (f *fb) i64(v int64) *fb   { return f.u64(uint64(v)) }
func (f *fb) raw(b ...byte) *fb { f.b = append(f.b, b...); return f }
func (f *fb) str(s string) *fb  { f.b = append(append(f.b, s...), 0); return f }

// data appends a length-prefixed value.
func (f *fb) data(s string) *fb { return f.i32(int32(len(s))).raw([]byte(s)...) }

// col is one tuple column for tuple.
type col struct {
	kind byte
	data string
}

// tuple appends TupleData.
func (f *fb) tuple(cols ...col) *fb {
	f.u16(uint16(len(cols)))
	for _, c := range cols {
		f.u8(c.kind)
		if c.kind == walparse.TupleText || c.kind == walparse.TupleBinary {
			f.data(c.data)
		}
	}
	return f
}

func (f *fb) bytes() []byte { return f.b }

// Frames used to put a Decoder into a state.
func beginFrame(finalLSN uint64, xid uint32) []byte {
	return frame(walparse.TypeBegin).u64(finalLSN).i64(1000).u32(xid).bytes()
}

func commitFrame(commitLSN uint64) []byte {
	return frame(walparse.TypeCommit).u8(0).u64(commitLSN).u64(commitLSN + 8).i64(1000).bytes()
}

func streamStartFrame(xid uint32, first bool) []byte {
	f := byte(0)
	if first {
		f = 1
	}
	return frame(walparse.TypeStreamStart).u32(xid).u8(f).bytes()
}

func streamStopFrame() []byte { return frame(walparse.TypeStreamStop).bytes() }

func beginPrepareFrame(prepareLSN uint64, xid uint32, gid string) []byte {
	return frame(walparse.TypeBeginPrepare).u64(prepareLSN).u64(prepareLSN + 8).i64(2000).u32(xid).str(gid).bytes()
}

// tuples convert cols to the decoded form.
func tupleOf(cols ...col) walparse.Tuple {
	t := walparse.Tuple{Columns: []walparse.TupleColumn{}}
	for _, c := range cols {
		tc := walparse.TupleColumn{Kind: c.kind}
		if c.kind == walparse.TupleText || c.kind == walparse.TupleBinary {
			tc.Data = []byte(c.data)
		}
		t.Columns = append(t.Columns, tc)
	}
	return t
}
