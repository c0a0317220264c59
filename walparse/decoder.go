package walparse

import (
	"slices"
	"strconv"

	"github.com/pgstream/pgstream/lsn"
)

// MaxColumns is the largest column count a Relation or tuple may declare (PostgreSQL's
// MaxTupleAttributeNumber). Larger counts are rejected as malformed.
const MaxColumns = 1664

// Options configure a Decoder. The zero value decodes protocol version 1.
type Options struct {
	// ProtoVersion is the proto_version passed to START_REPLICATION, 1 to 4; 0 means 1.
	// Streaming messages need 2 or more, two-phase messages 3 or more.
	ProtoVersion int
	// ParallelStreaming is set when streaming = parallel was requested (protocol 4 only): Stream Abort
	// then carries the abort LSN and time.
	ParallelStreaming bool
}

// Validate reports whether the options describe a protocol the Decoder understands.
func (o Options) Validate() error {
	if o.ProtoVersion < 0 || o.ProtoVersion > 4 {
		return errorf(ErrInvalidOptions, "protocol version %d not in 1..4", o.ProtoVersion)
	}
	if o.ParallelStreaming && o.ProtoVersion < 4 {
		return errorf(ErrInvalidOptions, "parallel streaming needs protocol version 4, have %d", o.version())
	}
	return nil
}

func (o Options) version() int {
	if o.ProtoVersion == 0 {
		return 1
	}
	return o.ProtoVersion
}

// txState is what the last Begin/Begin Prepare opened.
type txState uint8

const (
	txNone    txState = iota
	txOpen            // after Begin, until Commit
	txPrepare         // after Begin Prepare, until Prepare
)

// Decoder decodes pgoutput messages one frame at a time and validates the transaction and stream
// state they imply. It reuses one value per message type: a returned message, and every []byte in it
// (tuple column Data, LogicalMessage Prefix and Content), aliases the frame and is valid only until
// the next call to Decode. *Relation and *TypeMsg are freshly allocated and own their data.
//
// A Decoder is not safe for concurrent use.
type Decoder struct {
	opts    Options
	version int
	optsErr error
	r       reader

	// Transaction state.
	tx         txState
	txXid      uint32  // xid of the open Begin Prepare
	txLSN      lsn.LSN // Begin.FinalLSN or BeginPrepare.PrepareLSN
	inStream   bool    // between Stream Start and Stream Stop
	streamXid  uint32  // xid of the current stream block
	openStream []uint32

	// One reusable value per message type.
	begin            Begin
	commit           Commit
	origin           Origin
	insert           Insert
	update           Update
	del              Delete
	truncate         Truncate
	message          LogicalMessage
	streamStart      StreamStart
	streamStop       StreamStop
	streamCommit     StreamCommit
	streamAbort      StreamAbort
	beginPrepare     BeginPrepare
	prepare          Prepare
	commitPrepared   CommitPrepared
	rollbackPrepared RollbackPrepared
	streamPrepare    StreamPrepare
}

// NewDecoder returns a Decoder for opts. If opts fail Validate, every Decode returns an error
// wrapping ErrInvalidOptions.
func NewDecoder(opts Options) *Decoder {
	return &Decoder{opts: opts, version: opts.version(), optsErr: opts.Validate()}
}

// Reset forgets the transaction and stream state, as needed after reconnecting: the server then
// resends from the slot's restart point.
func (d *Decoder) Reset() {
	d.tx = txNone
	d.txXid = 0
	d.txLSN = 0
	d.inStream = false
	d.streamXid = 0
	d.openStream = d.openStream[:0]
}

// InTransaction reports whether a Begin or Begin Prepare is open.
func (d *Decoder) InTransaction() bool { return d.tx != txNone }

// InStream reports whether a stream block (Stream Start without its Stream Stop yet) is open, and
// for which transaction.
func (d *Decoder) InStream() (xid uint32, ok bool) { return d.streamXid, d.inStream }

// messageMinVersion is the protocol version that introduced t; ok is false for unknown types.
func messageMinVersion(t MessageType) (version int, ok bool) {
	switch t {
	case TypeBegin, TypeMessage, TypeCommit, TypeOrigin, TypeRelation, TypeType,
		TypeInsert, TypeUpdate, TypeDelete, TypeTruncate:
		return 1, true
	case TypeStreamStart, TypeStreamStop, TypeStreamCommit, TypeStreamAbort:
		return 2, true
	case TypeBeginPrepare, TypePrepare, TypeCommitPrepared, TypeRollbackPrepared, TypeStreamPrepare:
		return 3, true
	}
	return 0, false
}

// Decode decodes one pgoutput message: the payload of one XLogData message, starting with the
// message type byte. The result is one of the pointer types of this package. Malformed frames and
// frames not allowed in the current state return a *DecodeError and leave the state unchanged.
func (d *Decoder) Decode(frame []byte) (Message, error) {
	if len(frame) == 0 {
		return nil, &DecodeError{Err: errorf(ErrShortMessage, "empty frame")}
	}
	t := MessageType(frame[0])
	if d.optsErr != nil {
		return nil, &DecodeError{Type: t, Err: d.optsErr}
	}
	minVersion, ok := messageMinVersion(t)
	if !ok {
		return nil, &DecodeError{Type: t, Err: errorf(ErrUnknownMessage, "unknown message type %q (0x%02x)", rune(t), byte(t))}
	}
	if minVersion > d.version {
		return nil, &DecodeError{Type: t, Err: errorf(ErrUnknownMessage, "%s needs protocol version %d, decoding version %d", t, minVersion, d.version)}
	}
	d.r.reset(frame)
	r := &d.r
	r.off = 1

	var msg Message
	switch t {
	case TypeBegin:
		msg = d.decodeBegin()
	case TypeCommit:
		msg = d.decodeCommit()
	case TypeOrigin:
		msg = d.decodeOrigin()
	case TypeRelation:
		msg = d.decodeRelation()
	case TypeType:
		msg = d.decodeType()
	case TypeInsert:
		msg = d.decodeInsert()
	case TypeUpdate:
		msg = d.decodeUpdate()
	case TypeDelete:
		msg = d.decodeDelete()
	case TypeTruncate:
		msg = d.decodeTruncate()
	case TypeMessage:
		msg = d.decodeMessage()
	case TypeStreamStart:
		msg = d.decodeStreamStart()
	case TypeStreamStop:
		msg = &d.streamStop
	case TypeStreamCommit:
		msg = d.decodeStreamCommit()
	case TypeStreamAbort:
		msg = d.decodeStreamAbort()
	case TypeBeginPrepare:
		msg = d.decodeBeginPrepare()
	case TypePrepare:
		msg = d.decodePrepare()
	case TypeCommitPrepared:
		msg = d.decodeCommitPrepared()
	case TypeRollbackPrepared:
		msg = d.decodeRollbackPrepared()
	case TypeStreamPrepare:
		msg = d.decodeStreamPrepare()
	}
	if r.err != nil {
		return nil, &DecodeError{Type: t, Offset: r.errOff, Err: r.err}
	}
	if n := r.remaining(); n > 0 {
		return nil, &DecodeError{Type: t, Offset: r.off, Err: errorf(ErrTrailingBytes, "%d bytes after the end of the message", n)}
	}
	if err := d.transition(msg); err != nil {
		return nil, &DecodeError{Type: t, Err: err}
	}
	return msg, nil
}

// streamXidPrefix reads the leading xid that change messages carry inside a stream block.
func (d *Decoder) streamXidPrefix() uint32 {
	if !d.inStream {
		return 0
	}
	return d.r.u32("xid")
}

func (d *Decoder) lsnField(what string) lsn.LSN { return lsn.LSN(d.r.u64(what)) }

// setLSN reads an LSN that the protocol requires to be valid (non-zero).
func (d *Decoder) setLSN(what string) lsn.LSN {
	off := d.r.off
	v := d.lsnField(what)
	if v == lsn.InvalidLSN {
		d.r.malformed(off, "%s not set", what)
	}
	return v
}

// zeroFlags reads a flags byte that is unused by every protocol version so far and must be zero.
func (d *Decoder) zeroFlags() uint8 {
	off := d.r.off
	f := d.r.u8("flags")
	if f != 0 {
		d.r.malformed(off, "unknown flags 0x%02x", f)
	}
	return f
}

func (d *Decoder) decodeBegin() *Begin {
	m := &d.begin
	m.FinalLSN = d.setLSN("final LSN")
	m.CommitTime = Timestamp(d.r.i64("commit time"))
	m.Xid = d.r.u32("xid")
	return m
}

func (d *Decoder) decodeCommit() *Commit {
	m := &d.commit
	m.Flags = d.zeroFlags()
	m.CommitLSN = d.setLSN("commit LSN")
	m.EndLSN = d.setLSN("end LSN")
	m.CommitTime = Timestamp(d.r.i64("commit time"))
	return m
}

func (d *Decoder) decodeOrigin() *Origin {
	m := &d.origin
	m.CommitLSN = d.lsnField("origin commit LSN")
	m.Name = string(d.r.cstring("origin name"))
	return m
}

func (d *Decoder) decodeRelation() *Relation {
	r := &d.r
	m := &Relation{Xid: d.streamXidPrefix()}
	m.RelationID = r.u32("relation id")
	m.Namespace = string(r.cstring("namespace"))
	m.Name = string(r.cstring("relation name"))
	off := r.off
	m.ReplicaIdentity = r.u8("replica identity")
	switch m.ReplicaIdentity {
	case ReplicaIdentityDefault, ReplicaIdentityNothing, ReplicaIdentityFull, ReplicaIdentityIndex:
	default:
		r.malformed(off, "unknown replica identity %q", rune(m.ReplicaIdentity))
	}
	off = r.off
	n := int(r.u16("column count"))
	if r.err != nil {
		return m
	}
	// Each column takes at least 10 bytes: flags, an empty name's NUL, type OID and type modifier.
	if n > MaxColumns {
		r.malformed(off, "column count %d exceeds %d", n, MaxColumns)
		return m
	}
	if n*10 > r.remaining() {
		r.fail(off, errorf(ErrShortMessage, "column count %d needs at least %d bytes, %d remain", n, n*10, r.remaining()))
		return m
	}
	m.Columns = make([]RelationColumn, n)
	for i := range m.Columns {
		c := &m.Columns[i]
		c.Flags = r.u8("column flags")
		c.Name = string(r.cstring("column name"))
		c.TypeOID = r.u32("column type OID")
		c.TypeMod = r.i32("column type modifier")
		if r.err != nil {
			r.err = prefixError(r.err, "column "+strconv.Itoa(i))
			return m
		}
	}
	return m
}

func (d *Decoder) decodeType() *TypeMsg {
	m := &TypeMsg{Xid: d.streamXidPrefix()}
	m.TypeOID = d.r.u32("type OID")
	m.Namespace = string(d.r.cstring("namespace"))
	m.Name = string(d.r.cstring("type name"))
	return m
}

// tuple decodes TupleData into cols, reusing its backing array, and returns the filled slice.
func (d *Decoder) tuple(cols []TupleColumn, what string) []TupleColumn {
	r := &d.r
	cols = cols[:0]
	if r.err != nil {
		return cols
	}
	off := r.off
	n := int(r.u16("column count"))
	switch {
	case r.err != nil:
	case n > MaxColumns:
		r.malformed(off, "column count %d exceeds %d", n, MaxColumns)
	case n > r.remaining(): // every column takes at least its kind byte
		r.fail(off, errorf(ErrShortMessage, "column count %d exceeds remaining %d bytes", n, r.remaining()))
	}
	if r.err != nil {
		r.err = prefixError(r.err, what)
		return cols
	}
	cols = slices.Grow(cols, n)[:n]
	for i := range cols {
		c := &cols[i]
		off := r.off
		c.Kind = r.u8("kind")
		switch c.Kind {
		case TupleNull, TupleUnchangedToast:
			c.Data = nil
		case TupleText, TupleBinary:
			c.Data = r.bytesN(int(r.i32("length")), "length")
		default:
			c.Data = nil
			r.malformed(off, "unknown kind %q", rune(c.Kind))
		}
		if r.err != nil {
			r.err = prefixError(r.err, what+" column "+strconv.Itoa(i))
			return cols[:i]
		}
	}
	return cols
}

// tupleMarker reads the byte announcing a tuple and returns it with its offset.
func (d *Decoder) tupleMarker(what string) (byte, int) {
	off := d.r.off
	return d.r.u8(what), off
}

func (d *Decoder) decodeInsert() *Insert {
	m := &d.insert
	m.Xid = d.streamXidPrefix()
	m.RelationID = d.r.u32("relation id")
	if k, off := d.tupleMarker("tuple marker"); k != 'N' {
		d.r.malformed(off, "expected new tuple marker 'N', got %q", rune(k))
	}
	m.New.Columns = d.tuple(m.New.Columns, "tuple")
	return m
}

func (d *Decoder) decodeUpdate() *Update {
	m := &d.update
	m.Xid = d.streamXidPrefix()
	m.RelationID = d.r.u32("relation id")
	k, off := d.tupleMarker("tuple marker")
	m.OldKind = OldNone
	m.Old.Columns = m.Old.Columns[:0]
	switch k {
	case OldKey, OldFull:
		m.OldKind = k
		m.Old.Columns = d.tuple(m.Old.Columns, "old tuple")
		k, off = d.tupleMarker("new tuple marker")
		if k != 'N' {
			d.r.malformed(off, "expected new tuple marker 'N', got %q", rune(k))
		}
	case 'N':
	default:
		d.r.malformed(off, "expected tuple marker 'K', 'O' or 'N', got %q", rune(k))
	}
	m.New.Columns = d.tuple(m.New.Columns, "new tuple")
	return m
}

func (d *Decoder) decodeDelete() *Delete {
	m := &d.del
	m.Xid = d.streamXidPrefix()
	m.RelationID = d.r.u32("relation id")
	k, off := d.tupleMarker("tuple marker")
	m.OldKind = k
	if k != OldKey && k != OldFull {
		d.r.malformed(off, "expected old tuple marker 'K' or 'O', got %q", rune(k))
	}
	m.Old.Columns = d.tuple(m.Old.Columns, "old tuple")
	return m
}

func (d *Decoder) decodeTruncate() *Truncate {
	r := &d.r
	m := &d.truncate
	m.Xid = d.streamXidPrefix()
	off := r.off
	n := int(r.i32("relation count"))
	m.Options = r.u8("options")
	m.RelationIDs = m.RelationIDs[:0]
	switch {
	case r.err != nil:
		return m
	case n < 0:
		r.malformed(off, "negative relation count %d", n)
		return m
	case n > r.remaining()/4:
		r.fail(off, errorf(ErrShortMessage, "relation count %d needs %d bytes, %d remain", n, 4*n, r.remaining()))
		return m
	}
	if m.Options&^(TruncateCascade|TruncateRestartIdentity) != 0 {
		r.malformed(off+4, "unknown truncate options 0x%02x", m.Options)
		return m
	}
	m.RelationIDs = slices.Grow(m.RelationIDs, n)[:n]
	for i := range m.RelationIDs {
		m.RelationIDs[i] = r.u32("relation id")
	}
	return m
}

func (d *Decoder) decodeMessage() *LogicalMessage {
	r := &d.r
	m := &d.message
	m.Xid = d.streamXidPrefix()
	off := r.off
	m.Flags = r.u8("flags")
	if m.Flags&^MessageFlagTransactional != 0 {
		r.malformed(off, "unknown flags 0x%02x", m.Flags)
	}
	m.LSN = d.lsnField("message LSN")
	m.Prefix = r.cstring("prefix")
	m.Content = r.bytesN(int(r.i32("content length")), "content length")
	return m
}

func (d *Decoder) decodeStreamStart() *StreamStart {
	m := &d.streamStart
	m.Xid = d.r.u32("xid")
	off := d.r.off
	switch f := d.r.u8("first segment"); f {
	case 0, 1:
		m.FirstSegment = f == 1
	default:
		d.r.malformed(off, "first segment flag %d is neither 0 nor 1", f)
	}
	return m
}

func (d *Decoder) decodeStreamCommit() *StreamCommit {
	m := &d.streamCommit
	m.Xid = d.r.u32("xid")
	m.Flags = d.zeroFlags()
	m.CommitLSN = d.setLSN("commit LSN")
	m.EndLSN = d.setLSN("end LSN")
	m.CommitTime = Timestamp(d.r.i64("commit time"))
	return m
}

func (d *Decoder) decodeStreamAbort() *StreamAbort {
	m := &d.streamAbort
	m.Xid = d.r.u32("xid")
	m.SubXid = d.r.u32("subtransaction xid")
	m.AbortLSN, m.AbortTime = 0, 0
	if d.opts.ParallelStreaming {
		m.AbortLSN = d.lsnField("abort LSN")
		m.AbortTime = Timestamp(d.r.i64("abort time"))
	}
	return m
}

func (d *Decoder) gid() string {
	return string(d.r.cstring("gid"))
}

func (d *Decoder) decodeBeginPrepare() *BeginPrepare {
	m := &d.beginPrepare
	m.PrepareLSN = d.setLSN("prepare LSN")
	m.EndLSN = d.setLSN("end LSN")
	m.PrepareTime = Timestamp(d.r.i64("prepare time"))
	m.Xid = d.r.u32("xid")
	m.GID = d.gid()
	return m
}

func (d *Decoder) decodePrepare() *Prepare {
	m := &d.prepare
	m.Flags = d.zeroFlags()
	m.PrepareLSN = d.setLSN("prepare LSN")
	m.EndLSN = d.setLSN("end LSN")
	m.PrepareTime = Timestamp(d.r.i64("prepare time"))
	m.Xid = d.r.u32("xid")
	m.GID = d.gid()
	return m
}

func (d *Decoder) decodeCommitPrepared() *CommitPrepared {
	m := &d.commitPrepared
	m.Flags = d.zeroFlags()
	m.CommitLSN = d.setLSN("commit LSN")
	m.EndLSN = d.setLSN("end LSN")
	m.CommitTime = Timestamp(d.r.i64("commit time"))
	m.Xid = d.r.u32("xid")
	m.GID = d.gid()
	return m
}

func (d *Decoder) decodeRollbackPrepared() *RollbackPrepared {
	m := &d.rollbackPrepared
	m.Flags = d.zeroFlags()
	m.PrepareEndLSN = d.setLSN("prepare end LSN")
	m.RollbackEndLSN = d.setLSN("rollback end LSN")
	m.PrepareTime = Timestamp(d.r.i64("prepare time"))
	m.RollbackTime = Timestamp(d.r.i64("rollback time"))
	m.Xid = d.r.u32("xid")
	m.GID = d.gid()
	return m
}

func (d *Decoder) decodeStreamPrepare() *StreamPrepare {
	m := &d.streamPrepare
	m.Flags = d.zeroFlags()
	m.PrepareLSN = d.setLSN("prepare LSN")
	m.EndLSN = d.setLSN("end LSN")
	m.PrepareTime = Timestamp(d.r.i64("prepare time"))
	m.Xid = d.r.u32("xid")
	m.GID = d.gid()
	return m
}
