package walparse_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/walparse"
)

var (
	v1       = walparse.Options{}
	v2       = walparse.Options{ProtoVersion: 2}
	v3       = walparse.Options{ProtoVersion: 3}
	v4       = walparse.Options{ProtoVersion: 4}
	v4Par    = walparse.Options{ProtoVersion: 4, ParallelStreaming: true}
	inTx     = [][]byte{beginFrame(0x100, 700)}
	inStream = [][]byte{streamStartFrame(77, true)}
	// afterStream leaves xid 77 streamed but no block open.
	afterStream = [][]byte{streamStartFrame(77, true), streamStopFrame()}
	inPrepare   = [][]byte{beginPrepareFrame(0x200, 701, "g1")}
)

// allKinds is a tuple holding every column kind.
var allKinds = []col{{walparse.TupleNull, ""}, {walparse.TupleUnchangedToast, ""}, {walparse.TupleText, "hello"}, {walparse.TupleBinary, "\x00\x01\xff"}, {walparse.TupleText, ""}}

type validCase struct {
	name  string
	opts  walparse.Options
	setup [][]byte
	frame []byte
	want  walparse.Message
}

func validCases() []validCase {
	return []validCase{
		{"Begin", v1, nil, beginFrame(0x1_0000_0100, 700),
			&walparse.Begin{FinalLSN: 0x1_0000_0100, CommitTime: 1000, Xid: 700}},
		{"Commit", v1, inTx, commitFrame(0x100),
			&walparse.Commit{CommitLSN: 0x100, EndLSN: 0x108, CommitTime: 1000}},
		{"Origin", v1, inTx, frame(walparse.TypeOrigin).u64(0x55).str("node_a").bytes(),
			&walparse.Origin{CommitLSN: 0x55, Name: "node_a"}},
		{"Origin in stream", v2, inStream, frame(walparse.TypeOrigin).u64(0x55).str("").bytes(),
			&walparse.Origin{CommitLSN: 0x55, Name: ""}},
		{"Relation", v1, nil,
			frame(walparse.TypeRelation).u32(16384).str("public").str("t").u8('d').u16(3).
				u8(1).str("id").u32(23).i32(-1).
				u8(0).str("name").u32(1043).i32(68).
				u8(0).str("").u32(25).i32(-1).bytes(),
			&walparse.Relation{RelationID: 16384, Namespace: "public", Name: "t", ReplicaIdentity: 'd', Columns: []walparse.RelationColumn{
				{Flags: 1, Name: "id", TypeOID: 23, TypeMod: -1}, {Name: "name", TypeOID: 1043, TypeMod: 68}, {Name: "", TypeOID: 25, TypeMod: -1}}}},
		{"Relation no columns in tx", v1, inTx,
			frame(walparse.TypeRelation).u32(1).str("").str("empty").u8('n').u16(0).bytes(),
			&walparse.Relation{RelationID: 1, Name: "empty", ReplicaIdentity: 'n', Columns: []walparse.RelationColumn{}}},
		{"Relation in stream", v2, inStream,
			frame(walparse.TypeRelation).u32(77).u32(16384).str("s").str("t").u8('f').u16(1).u8(1).str("a").u32(23).i32(-1).bytes(),
			&walparse.Relation{Xid: 77, RelationID: 16384, Namespace: "s", Name: "t", ReplicaIdentity: 'f', Columns: []walparse.RelationColumn{{Flags: 1, Name: "a", TypeOID: 23, TypeMod: -1}}}},
		{"Relation v2 outside stream", v2, nil,
			frame(walparse.TypeRelation).u32(16384).str("s").str("t").u8('i').u16(0).bytes(),
			&walparse.Relation{RelationID: 16384, Namespace: "s", Name: "t", ReplicaIdentity: 'i', Columns: []walparse.RelationColumn{}}},
		{"Type", v1, nil, frame(walparse.TypeType).u32(16390).str("public").str("mood").bytes(),
			&walparse.TypeMsg{TypeOID: 16390, Namespace: "public", Name: "mood"}},
		{"Type in stream", v2, inStream, frame(walparse.TypeType).u32(78).u32(16390).str("public").str("mood").bytes(),
			&walparse.TypeMsg{Xid: 78, TypeOID: 16390, Namespace: "public", Name: "mood"}},
		{"Insert every kind", v1, inTx, frame(walparse.TypeInsert).u32(16384).u8('N').tuple(allKinds...).bytes(),
			&walparse.Insert{RelationID: 16384, New: tupleOf(allKinds...)}},
		{"Insert no columns", v1, inTx, frame(walparse.TypeInsert).u32(16384).u8('N').tuple().bytes(),
			&walparse.Insert{RelationID: 16384, New: tupleOf()}},
		{"Insert in prepared tx", v3, inPrepare, frame(walparse.TypeInsert).u32(16384).u8('N').tuple(col{'t', "1"}).bytes(),
			&walparse.Insert{RelationID: 16384, New: tupleOf(col{'t', "1"})}},
		{"Insert in stream", v2, inStream, frame(walparse.TypeInsert).u32(79).u32(16384).u8('N').tuple(col{'t', "1"}).bytes(),
			&walparse.Insert{Xid: 79, RelationID: 16384, New: tupleOf(col{'t', "1"})}},
		{"Update new only", v1, inTx, frame(walparse.TypeUpdate).u32(16384).u8('N').tuple(allKinds...).bytes(),
			&walparse.Update{RelationID: 16384, OldKind: walparse.OldNone, Old: tupleOf(), New: tupleOf(allKinds...)}},
		{"Update key", v1, inTx, frame(walparse.TypeUpdate).u32(16384).u8('K').tuple(col{'t', "1"}, col{'n', ""}).u8('N').tuple(col{'t', "2"}, col{'u', ""}).bytes(),
			&walparse.Update{RelationID: 16384, OldKind: walparse.OldKey, Old: tupleOf(col{'t', "1"}, col{'n', ""}), New: tupleOf(col{'t', "2"}, col{'u', ""})}},
		{"Update full", v1, inTx, frame(walparse.TypeUpdate).u32(16384).u8('O').tuple(allKinds...).u8('N').tuple(col{'b', "x"}).bytes(),
			&walparse.Update{RelationID: 16384, OldKind: walparse.OldFull, Old: tupleOf(allKinds...), New: tupleOf(col{'b', "x"})}},
		{"Update in stream", v2, inStream, frame(walparse.TypeUpdate).u32(80).u32(16384).u8('K').tuple(col{'t', "1"}).u8('N').tuple(col{'t', "2"}).bytes(),
			&walparse.Update{Xid: 80, RelationID: 16384, OldKind: walparse.OldKey, Old: tupleOf(col{'t', "1"}), New: tupleOf(col{'t', "2"})}},
		{"Delete key", v1, inTx, frame(walparse.TypeDelete).u32(16384).u8('K').tuple(col{'t', "1"}, col{'n', ""}).bytes(),
			&walparse.Delete{RelationID: 16384, OldKind: walparse.OldKey, Old: tupleOf(col{'t', "1"}, col{'n', ""})}},
		{"Delete full", v1, inTx, frame(walparse.TypeDelete).u32(16384).u8('O').tuple(allKinds...).bytes(),
			&walparse.Delete{RelationID: 16384, OldKind: walparse.OldFull, Old: tupleOf(allKinds...)}},
		{"Delete in stream", v2, inStream, frame(walparse.TypeDelete).u32(81).u32(16384).u8('K').tuple(col{'t', "1"}).bytes(),
			&walparse.Delete{Xid: 81, RelationID: 16384, OldKind: walparse.OldKey, Old: tupleOf(col{'t', "1"})}},
		{"Truncate", v1, inTx, frame(walparse.TypeTruncate).i32(2).u8(walparse.TruncateCascade | walparse.TruncateRestartIdentity).u32(16384).u32(16390).bytes(),
			&walparse.Truncate{Options: 3, RelationIDs: []uint32{16384, 16390}}},
		{"Truncate in stream", v2, inStream, frame(walparse.TypeTruncate).u32(82).i32(1).u8(0).u32(16384).bytes(),
			&walparse.Truncate{Xid: 82, RelationIDs: []uint32{16384}}},
		{"Message transactional", v1, inTx, frame(walparse.TypeMessage).u8(1).u64(0x300).str("pfx").data("content").bytes(),
			&walparse.LogicalMessage{Flags: 1, LSN: 0x300, Prefix: []byte("pfx"), Content: []byte("content")}},
		{"Message non-transactional idle", v1, nil, frame(walparse.TypeMessage).u8(0).u64(0x300).str("").data("").bytes(),
			&walparse.LogicalMessage{LSN: 0x300, Prefix: []byte{}, Content: []byte{}}},
		{"Message in stream", v2, inStream, frame(walparse.TypeMessage).u32(83).u8(1).u64(0x300).str("p").data("c").bytes(),
			&walparse.LogicalMessage{Xid: 83, Flags: 1, LSN: 0x300, Prefix: []byte("p"), Content: []byte("c")}},
		{"StreamStart first", v2, nil, streamStartFrame(90, true), &walparse.StreamStart{Xid: 90, FirstSegment: true}},
		{"StreamStart next", v2, afterStream, streamStartFrame(77, false), &walparse.StreamStart{Xid: 77}},
		{"StreamStop", v2, inStream, streamStopFrame(), &walparse.StreamStop{}},
		{"StreamCommit", v2, afterStream, frame(walparse.TypeStreamCommit).u32(77).u8(0).u64(0x400).u64(0x408).i64(3000).bytes(),
			&walparse.StreamCommit{Xid: 77, CommitLSN: 0x400, EndLSN: 0x408, CommitTime: 3000}},
		{"StreamAbort top", v2, afterStream, frame(walparse.TypeStreamAbort).u32(77).u32(77).bytes(),
			&walparse.StreamAbort{Xid: 77, SubXid: 77}},
		{"StreamAbort sub", v2, afterStream, frame(walparse.TypeStreamAbort).u32(77).u32(78).bytes(),
			&walparse.StreamAbort{Xid: 77, SubXid: 78}},
		{"StreamAbort v4 not parallel", v4, afterStream, frame(walparse.TypeStreamAbort).u32(77).u32(78).bytes(),
			&walparse.StreamAbort{Xid: 77, SubXid: 78}},
		{"StreamAbort v4 parallel", v4Par, afterStream, frame(walparse.TypeStreamAbort).u32(77).u32(77).u64(0x500).i64(4000).bytes(),
			&walparse.StreamAbort{Xid: 77, SubXid: 77, AbortLSN: 0x500, AbortTime: 4000}},
		{"BeginPrepare", v3, nil, beginPrepareFrame(0x200, 701, "g1"),
			&walparse.BeginPrepare{PrepareLSN: 0x200, EndLSN: 0x208, PrepareTime: 2000, Xid: 701, GID: "g1"}},
		{"Prepare", v3, inPrepare, frame(walparse.TypePrepare).u8(0).u64(0x200).u64(0x208).i64(2000).u32(701).str("g1").bytes(),
			&walparse.Prepare{PrepareLSN: 0x200, EndLSN: 0x208, PrepareTime: 2000, Xid: 701, GID: "g1"}},
		{"CommitPrepared", v3, nil, frame(walparse.TypeCommitPrepared).u8(0).u64(0x600).u64(0x608).i64(5000).u32(701).str("g1").bytes(),
			&walparse.CommitPrepared{CommitLSN: 0x600, EndLSN: 0x608, CommitTime: 5000, Xid: 701, GID: "g1"}},
		{"RollbackPrepared", v4, nil, frame(walparse.TypeRollbackPrepared).u8(0).u64(0x208).u64(0x708).i64(2000).i64(6000).u32(701).str("g1").bytes(),
			&walparse.RollbackPrepared{PrepareEndLSN: 0x208, RollbackEndLSN: 0x708, PrepareTime: 2000, RollbackTime: 6000, Xid: 701, GID: "g1"}},
		{"StreamPrepare", v3, afterStream, frame(walparse.TypeStreamPrepare).u8(0).u64(0x800).u64(0x808).i64(7000).u32(77).str("g2").bytes(),
			&walparse.StreamPrepare{PrepareLSN: 0x800, EndLSN: 0x808, PrepareTime: 7000, Xid: 77, GID: "g2"}},
	}
}

// newDecoder returns a Decoder that has accepted setup.
func newDecoder(t testing.TB, opts walparse.Options, setup [][]byte) *walparse.Decoder {
	t.Helper()
	d := walparse.NewDecoder(opts)
	for i, f := range setup {
		if _, err := d.Decode(f); err != nil {
			t.Fatalf("setup frame %d: %v", i, err)
		}
	}
	return d
}

// show renders a message so that nil and empty slices compare equal.
func show(m walparse.Message) string { return fmt.Sprintf("%T%+v", m, m) }

func TestDecodeValid(t *testing.T) {
	for _, tc := range validCases() {
		t.Run(tc.name, func(t *testing.T) {
			d := newDecoder(t, tc.opts, tc.setup)
			got, err := d.Decode(tc.frame)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got.Type() != walparse.MessageType(tc.frame[0]) {
				t.Errorf("Type() = %v, want %v", got.Type(), walparse.MessageType(tc.frame[0]))
			}
			if show(got) != show(tc.want) {
				t.Errorf("got  %s\nwant %s", show(got), show(tc.want))
			}
		})
	}
}

// Every strict prefix of a valid frame is an error, never a panic, and leaves the state unchanged:
// the full frame still decodes afterwards on the same Decoder.
func TestDecodeTruncated(t *testing.T) {
	for _, tc := range validCases() {
		t.Run(tc.name, func(t *testing.T) {
			d := newDecoder(t, tc.opts, tc.setup)
			for n := 0; n < len(tc.frame); n++ {
				m, err := d.Decode(tc.frame[:n])
				if err == nil {
					t.Fatalf("prefix of %d/%d bytes decoded as %s", n, len(tc.frame), show(m))
				}
				if m != nil {
					t.Fatalf("prefix of %d bytes: message %s returned with error", n, show(m))
				}
				var de *walparse.DecodeError
				if !errors.As(err, &de) || !errors.Is(err, walparse.ErrShortMessage) {
					t.Fatalf("prefix of %d bytes: error %v is not a short-message *DecodeError", n, err)
				}
				if de.Offset < 0 || de.Offset > n {
					t.Fatalf("prefix of %d bytes: offset %d outside the frame", n, de.Offset)
				}
			}
			if _, err := d.Decode(tc.frame); err != nil {
				t.Fatalf("full frame after truncated ones: %v", err)
			}
		})
	}
}

func TestDecodeTrailingBytes(t *testing.T) {
	for _, tc := range validCases() {
		t.Run(tc.name, func(t *testing.T) {
			d := newDecoder(t, tc.opts, tc.setup)
			f := append(append([]byte{}, tc.frame...), 0, 0xff)
			_, err := d.Decode(f)
			if !errors.Is(err, walparse.ErrTrailingBytes) {
				t.Fatalf("err = %v, want ErrTrailingBytes", err)
			}
			var de *walparse.DecodeError
			if !errors.As(err, &de) || de.Offset != len(tc.frame) {
				t.Fatalf("err = %#v, want offset %d", err, len(tc.frame))
			}
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	cases := []struct {
		name  string
		opts  walparse.Options
		setup [][]byte
		frame []byte
		want  error
		text  string // substring of Error()
	}{
		{"empty frame", v1, nil, nil, walparse.ErrShortMessage, "empty frame"},
		{"unknown type", v4, nil, []byte{'X', 1, 2}, walparse.ErrUnknownMessage, "message type 0x58 at offset 0"},
		{"NUL type", v4, nil, []byte{0}, walparse.ErrUnknownMessage, "0x00"},
		{"StreamStart in v1", v1, nil, streamStartFrame(1, true), walparse.ErrUnknownMessage, "needs protocol version 2"},
		{"StreamAbort in v1", v1, nil, frame(walparse.TypeStreamAbort).u32(1).u32(1).bytes(), walparse.ErrUnknownMessage, "needs protocol version 2"},
		{"BeginPrepare in v2", v2, nil, beginPrepareFrame(0x200, 1, "g"), walparse.ErrUnknownMessage, "needs protocol version 3"},
		{"StreamPrepare in v2", v2, afterStream, frame(walparse.TypeStreamPrepare).u8(0).u64(1).u64(2).i64(0).u32(77).str("g").bytes(), walparse.ErrUnknownMessage, "needs protocol version 3"},
		{"bad options", walparse.Options{ProtoVersion: 5}, nil, beginFrame(1, 1), walparse.ErrInvalidOptions, "protocol version 5"},
		{"parallel before v4", walparse.Options{ProtoVersion: 3, ParallelStreaming: true}, nil, beginFrame(1, 1), walparse.ErrInvalidOptions, "parallel"},
		{"Begin unset final LSN", v1, nil, beginFrame(0, 1), walparse.ErrMalformed, "Begin at offset 1: final LSN not set"},
		{"Commit flags", v1, inTx, frame(walparse.TypeCommit).u8(1).u64(0x100).u64(0x108).i64(0).bytes(), walparse.ErrMalformed, "unknown flags 0x01"},
		{"Prepare flags", v3, inPrepare, frame(walparse.TypePrepare).u8(2).u64(0x200).u64(0x208).i64(0).u32(701).str("g1").bytes(), walparse.ErrMalformed, "unknown flags"},
		{"CommitPrepared unset end LSN", v3, nil, frame(walparse.TypeCommitPrepared).u8(0).u64(0x600).u64(0).i64(0).u32(1).str("g").bytes(), walparse.ErrMalformed, "end LSN not set"},
		{"Origin unterminated", v1, inTx, frame(walparse.TypeOrigin).u64(1).raw('a', 'b').bytes(), walparse.ErrShortMessage, "origin name: string not NUL-terminated"},
		{"Relation bad identity", v1, nil, frame(walparse.TypeRelation).u32(1).str("s").str("t").u8('x').u16(0).bytes(), walparse.ErrMalformed, "replica identity"},
		{"Relation too many columns", v1, nil, frame(walparse.TypeRelation).u32(1).str("s").str("t").u8('d').u16(1665).bytes(), walparse.ErrMalformed, "column count 1665 exceeds 1664"},
		{"Relation column count beyond frame", v1, nil, frame(walparse.TypeRelation).u32(1).str("s").str("t").u8('d').u16(3).u8(0).str("a").u32(23).i32(-1).bytes(), walparse.ErrShortMessage, "column count 3 needs at least 30 bytes"},
		{"Relation column name unterminated", v1, nil, frame(walparse.TypeRelation).u32(1).str("s").str("t").u8('d').u16(1).u8(0).raw('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j').bytes(), walparse.ErrShortMessage, "column 0: column name"},
		{"Insert bad marker", v1, inTx, frame(walparse.TypeInsert).u32(1).u8('K').tuple(col{'t', "1"}).bytes(), walparse.ErrMalformed, "expected new tuple marker 'N'"},
		{"Insert bad kind", v1, inTx, frame(walparse.TypeInsert).u32(1).u8('N').tuple(col{'t', "1"}, col{'z', ""}).bytes(), walparse.ErrMalformed, "Insert at offset 14: tuple column 1: unknown kind 'z'"},
		{"Insert negative length", v1, inTx, frame(walparse.TypeInsert).u32(1).u8('N').u16(1).u8('t').i32(-1).bytes(), walparse.ErrMalformed, "tuple column 0: negative length -1"},
		{"Insert length beyond frame", v1, inTx, frame(walparse.TypeInsert).u32(1).u8('N').u16(4).u8('n').u8('n').u8('n').u8('t').i32(4096).raw(make([]byte, 12)...).bytes(), walparse.ErrShortMessage,
			"walparse: Insert at offset 16: tuple column 3: length 4096 exceeds remaining 12 bytes"},
		{"Insert absurd length", v1, inTx, frame(walparse.TypeInsert).u32(1).u8('N').u16(1).u8('b').u32(0x7fffffff).bytes(), walparse.ErrShortMessage, "length 2147483647 exceeds remaining 0 bytes"},
		{"Insert too many columns", v1, inTx, frame(walparse.TypeInsert).u32(1).u8('N').u16(0xffff).bytes(), walparse.ErrMalformed, "column count 65535 exceeds 1664"},
		{"Insert column count beyond frame", v1, inTx, frame(walparse.TypeInsert).u32(1).u8('N').u16(5).u8('n').bytes(), walparse.ErrShortMessage, "column count 5 exceeds remaining 1 bytes"},
		{"Update bad marker", v1, inTx, frame(walparse.TypeUpdate).u32(1).u8('X').tuple().bytes(), walparse.ErrMalformed, "expected tuple marker 'K', 'O' or 'N'"},
		{"Update old then no N", v1, inTx, frame(walparse.TypeUpdate).u32(1).u8('K').tuple(col{'t', "1"}).u8('O').tuple(col{'t', "1"}).bytes(), walparse.ErrMalformed, "expected new tuple marker 'N', got 'O'"},
		{"Update bad old kind", v1, inTx, frame(walparse.TypeUpdate).u32(1).u8('O').tuple(col{'q', ""}).u8('N').tuple().bytes(), walparse.ErrMalformed, "old tuple column 0: unknown kind 'q'"},
		{"Delete new marker", v1, inTx, frame(walparse.TypeDelete).u32(1).u8('N').tuple(col{'t', "1"}).bytes(), walparse.ErrMalformed, "expected old tuple marker"},
		{"Truncate negative count", v1, inTx, frame(walparse.TypeTruncate).i32(-1).u8(0).bytes(), walparse.ErrMalformed, "negative relation count -1"},
		{"Truncate count beyond frame", v1, inTx, frame(walparse.TypeTruncate).i32(1 << 30).u8(0).u32(1).bytes(), walparse.ErrShortMessage, "relation count 1073741824"},
		{"Truncate unknown options", v1, inTx, frame(walparse.TypeTruncate).i32(1).u8(4).u32(1).bytes(), walparse.ErrMalformed, "unknown truncate options 0x04"},
		{"Message negative length", v1, inTx, frame(walparse.TypeMessage).u8(1).u64(1).str("p").i32(-7).bytes(), walparse.ErrMalformed, "negative content length -7"},
		{"Message unknown flags", v1, inTx, frame(walparse.TypeMessage).u8(3).u64(1).str("p").data("").bytes(), walparse.ErrMalformed, "unknown flags 0x03"},
		{"StreamStart bad first segment", v2, nil, frame(walparse.TypeStreamStart).u32(1).u8(2).bytes(), walparse.ErrMalformed, "first segment flag 2"},
		{"StreamStop with payload", v2, inStream, frame(walparse.TypeStreamStop).u8(0).bytes(), walparse.ErrTrailingBytes, "1 bytes after the end"},
		{"StreamAbort parallel short", v4Par, afterStream, frame(walparse.TypeStreamAbort).u32(77).u32(77).bytes(), walparse.ErrShortMessage, "abort LSN"},
		{"StreamAbort non-parallel long", v4, afterStream, frame(walparse.TypeStreamAbort).u32(77).u32(77).u64(1).i64(1).bytes(), walparse.ErrTrailingBytes, ""},
		{"Insert in stream missing xid", v2, inStream, frame(walparse.TypeInsert).u32(1).u8('N').bytes(), walparse.ErrShortMessage, ""},

		// Transaction state.
		{"Begin inside Begin", v1, inTx, beginFrame(0x900, 2), walparse.ErrTxState, "Begin inside the transaction ending at 0/100"},
		{"Begin inside BeginPrepare", v3, inPrepare, beginFrame(0x900, 2), walparse.ErrTxState, "prepared transaction of xid 701"},
		{"Begin inside stream", v2, inStream, beginFrame(0x900, 2), walparse.ErrTxState, "stream block of xid 77"},
		{"Commit without Begin", v1, nil, commitFrame(0x100), walparse.ErrTxState, "Commit outside any transaction, expected an open Begin"},
		{"Commit LSN mismatch", v1, inTx, commitFrame(0x101), walparse.ErrTxState, "Commit LSN 0/101 does not match Begin final LSN 0/100"},
		{"Commit closes BeginPrepare", v3, inPrepare, commitFrame(0x200), walparse.ErrTxState, "expected an open Begin"},
		{"Insert outside tx", v1, nil, frame(walparse.TypeInsert).u32(1).u8('N').tuple().bytes(), walparse.ErrTxState, "Insert outside a transaction"},
		{"Update outside tx", v1, nil, frame(walparse.TypeUpdate).u32(1).u8('N').tuple().bytes(), walparse.ErrTxState, "Update outside"},
		{"Delete outside tx", v1, nil, frame(walparse.TypeDelete).u32(1).u8('K').tuple().bytes(), walparse.ErrTxState, "Delete outside"},
		{"Truncate outside tx", v1, nil, frame(walparse.TypeTruncate).i32(0).u8(0).bytes(), walparse.ErrTxState, "Truncate outside"},
		{"transactional Message outside tx", v1, nil, frame(walparse.TypeMessage).u8(1).u64(1).str("p").data("c").bytes(), walparse.ErrTxState, "transactional Message outside"},
		{"Origin outside tx", v1, nil, frame(walparse.TypeOrigin).u64(1).str("o").bytes(), walparse.ErrTxState, "Origin outside"},
		{"StreamStart inside stream", v2, inStream, streamStartFrame(78, true), walparse.ErrTxState, "expected StreamStop"},
		{"StreamStart inside tx", v2, inTx, streamStartFrame(78, true), walparse.ErrTxState, "StreamStart inside the transaction"},
		{"StreamStart first twice", v2, afterStream, streamStartFrame(77, true), walparse.ErrTxState, "already streaming"},
		{"StreamStart continues unknown", v2, nil, streamStartFrame(78, false), walparse.ErrTxState, "never started"},
		{"StreamStop outside stream", v2, nil, streamStopFrame(), walparse.ErrTxState, "StreamStop outside a stream block"},
		{"StreamCommit inside stream", v2, inStream, frame(walparse.TypeStreamCommit).u32(77).u8(0).u64(1).u64(2).i64(0).bytes(), walparse.ErrTxState, "StreamCommit inside the stream block"},
		{"StreamCommit unknown xid", v2, afterStream, frame(walparse.TypeStreamCommit).u32(78).u8(0).u64(1).u64(2).i64(0).bytes(), walparse.ErrTxState, "StreamCommit of xid 78, which was never started"},
		{"StreamAbort unknown xid", v2, nil, frame(walparse.TypeStreamAbort).u32(78).u32(78).bytes(), walparse.ErrTxState, "never started"},
		{"StreamAbort inside stream", v2, inStream, frame(walparse.TypeStreamAbort).u32(77).u32(77).bytes(), walparse.ErrTxState, "inside the stream block"},
		{"StreamPrepare inside stream", v3, inStream, frame(walparse.TypeStreamPrepare).u8(0).u64(1).u64(2).i64(0).u32(77).str("g").bytes(), walparse.ErrTxState, "inside the stream block"},
		{"StreamPrepare unknown xid", v3, nil, frame(walparse.TypeStreamPrepare).u8(0).u64(1).u64(2).i64(0).u32(77).str("g").bytes(), walparse.ErrTxState, "never started"},
		{"Prepare without BeginPrepare", v3, nil, frame(walparse.TypePrepare).u8(0).u64(0x200).u64(0x208).i64(0).u32(701).str("g1").bytes(), walparse.ErrTxState, "expected an open BeginPrepare"},
		{"Prepare closes Begin", v3, inTx, frame(walparse.TypePrepare).u8(0).u64(0x100).u64(0x108).i64(0).u32(700).str("g1").bytes(), walparse.ErrTxState, "expected an open BeginPrepare"},
		{"Prepare xid mismatch", v3, inPrepare, frame(walparse.TypePrepare).u8(0).u64(0x200).u64(0x208).i64(0).u32(702).str("g1").bytes(), walparse.ErrTxState, "Prepare of xid 702 at 0/200 does not match BeginPrepare of xid 701 at 0/200"},
		{"Prepare LSN mismatch", v3, inPrepare, frame(walparse.TypePrepare).u8(0).u64(0x201).u64(0x208).i64(0).u32(701).str("g1").bytes(), walparse.ErrTxState, "does not match"},
		{"BeginPrepare inside Begin", v3, inTx, beginPrepareFrame(0x300, 5, "g"), walparse.ErrTxState, "BeginPrepare inside the transaction"},
		{"CommitPrepared inside tx", v3, inTx, frame(walparse.TypeCommitPrepared).u8(0).u64(1).u64(2).i64(0).u32(1).str("g").bytes(), walparse.ErrTxState, "CommitPrepared inside"},
		{"RollbackPrepared inside stream", v3, inStream, frame(walparse.TypeRollbackPrepared).u8(0).u64(1).u64(2).i64(0).i64(0).u32(1).str("g").bytes(), walparse.ErrTxState, "RollbackPrepared inside"},
	}
	sentinels := []error{walparse.ErrShortMessage, walparse.ErrTrailingBytes, walparse.ErrUnknownMessage, walparse.ErrMalformed, walparse.ErrTxState, walparse.ErrInvalidOptions}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDecoder(t, tc.opts, tc.setup)
			m, err := d.Decode(tc.frame)
			if err == nil {
				t.Fatalf("decoded as %s, want error", show(m))
			}
			if m != nil {
				t.Errorf("message %s returned with error", show(m))
			}
			var de *walparse.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			if len(tc.frame) > 0 && de.Type != walparse.MessageType(tc.frame[0]) {
				t.Errorf("Type = %v, want %v", de.Type, walparse.MessageType(tc.frame[0]))
			}
			for _, s := range sentinels {
				if errors.Is(err, s) != (s == tc.want) {
					t.Errorf("errors.Is(%v, %v) = %v", err, s, errors.Is(err, s))
				}
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Error() = %q, want it to contain %q", err.Error(), tc.text)
			}
		})
	}
}

// A rejected message leaves the state as it was.
func TestStateUnchangedAfterError(t *testing.T) {
	d := newDecoder(t, v1, inTx)
	if _, err := d.Decode(commitFrame(0x999)); !errors.Is(err, walparse.ErrTxState) {
		t.Fatalf("mismatched Commit: %v", err)
	}
	if _, err := d.Decode(commitFrame(0x100)); err != nil {
		t.Fatalf("matching Commit after a rejected one: %v", err)
	}
	if d.InTransaction() {
		t.Fatal("transaction still open after Commit")
	}
}

// A full streamed and two-phase conversation, including interleaved stream blocks of two
// transactions, a subtransaction abort and Reset.
func TestStreamLifecycle(t *testing.T) {
	ins := func(xid uint32) []byte {
		return frame(walparse.TypeInsert).u32(xid).u32(1).u8('N').tuple(col{'t', "x"}).bytes()
	}
	abort := func(xid, sub uint32) []byte { return frame(walparse.TypeStreamAbort).u32(xid).u32(sub).bytes() }
	commit := func(xid uint32) []byte {
		return frame(walparse.TypeStreamCommit).u32(xid).u8(0).u64(0x10).u64(0x18).i64(0).bytes()
	}
	d := walparse.NewDecoder(v3)
	steps := []struct {
		frame []byte
		want  error
	}{
		{streamStartFrame(10, true), nil},
		{ins(10), nil},
		{ins(11), nil}, // a subtransaction's change carries the subxid
		{streamStopFrame(), nil},
		{streamStartFrame(20, true), nil},
		{ins(20), nil},
		{streamStopFrame(), nil},
		{beginFrame(0x50, 30), nil}, // an ordinary transaction between stream blocks
		{commitFrame(0x50), nil},
		{streamStartFrame(10, false), nil},
		{streamStopFrame(), nil},
		{abort(10, 11), nil}, // subtransaction abort keeps xid 10 open
		{commit(10), nil},
		{commit(10), walparse.ErrTxState}, // already committed
		{abort(20, 20), nil},
		{streamStartFrame(20, false), walparse.ErrTxState}, // aborted
		{streamStartFrame(40, true), nil},
		{ins(40), nil},
		{streamStopFrame(), nil},
		{frame(walparse.TypeStreamPrepare).u8(0).u64(0x60).u64(0x68).i64(0).u32(40).str("gx").bytes(), nil},
		{frame(walparse.TypeCommitPrepared).u8(0).u64(0x70).u64(0x78).i64(0).u32(40).str("gx").bytes(), nil},
		{streamStartFrame(50, true), nil},
	}
	for i, s := range steps {
		_, err := d.Decode(s.frame)
		if !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Fatalf("step %d (%v): err = %v, want %v", i, walparse.MessageType(s.frame[0]), err, s.want)
		}
	}
	if xid, ok := d.InStream(); !ok || xid != 50 {
		t.Fatalf("InStream() = %d, %v", xid, ok)
	}
	d.Reset()
	if _, ok := d.InStream(); ok {
		t.Fatal("stream block open after Reset")
	}
	// After Reset an insert carries no xid and needs a transaction again.
	plain := frame(walparse.TypeInsert).u32(1).u8('N').tuple(col{'t', "x"}).bytes()
	if _, err := d.Decode(plain); !errors.Is(err, walparse.ErrTxState) {
		t.Fatalf("insert outside a transaction after Reset: %v", err)
	}
	if _, err := d.Decode(streamStartFrame(50, true)); err != nil {
		t.Fatalf("restreaming xid 50 after Reset: %v", err)
	}
}

// Returned byte slices alias the frame but cannot be appended into it.
func TestAliasing(t *testing.T) {
	d := newDecoder(t, v1, inTx)
	f := frame(walparse.TypeInsert).u32(1).u8('N').tuple(col{'t', "ab"}, col{'t', "cd"}).bytes()
	m, err := d.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	ins := m.(*walparse.Insert)
	_ = append(ins.New.Columns[0].Data, 'X')
	if string(ins.New.Columns[1].Data) != "cd" {
		t.Fatalf("appending to column 0 overwrote column 1: %q", ins.New.Columns[1].Data)
	}
	f[len(f)-1] = 'Z'
	if string(ins.New.Columns[1].Data) != "cZ" {
		t.Fatalf("column data does not alias the frame: %q", ins.New.Columns[1].Data)
	}
}

func TestTimestamp(t *testing.T) {
	d := newDecoder(t, v1, nil)
	// 2024-01-02 03:04:05.000006 UTC in microseconds since 2000-01-01.
	const ts = 757479845000006
	m, err := d.Decode(frame(walparse.TypeBegin).u64(1).i64(ts).u32(1).bytes())
	if err != nil {
		t.Fatal(err)
	}
	got := m.(*walparse.Begin).CommitTime.Time().Format("2006-01-02 15:04:05.000000")
	if got != "2024-01-02 03:04:05.000006" {
		t.Fatalf("CommitTime = %s", got)
	}
	if m.(*walparse.Begin).FinalLSN != lsn.LSN(1) {
		t.Fatal("FinalLSN")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []walparse.Options{v1, {ProtoVersion: 1}, v2, v3, v4, v4Par} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	for _, o := range []walparse.Options{{ProtoVersion: -1}, {ProtoVersion: 5}, {ParallelStreaming: true}, {ProtoVersion: 2, ParallelStreaming: true}} {
		if err := o.Validate(); !errors.Is(err, walparse.ErrInvalidOptions) {
			t.Errorf("%+v: err = %v, want ErrInvalidOptions", o, err)
		}
	}
}
