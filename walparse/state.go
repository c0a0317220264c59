package walparse

import (
	"slices"
	"strconv"
)

// transition checks that msg is allowed in the current transaction and stream state and, if so,
// applies its effect. On error the state is unchanged.
func (d *Decoder) transition(msg Message) error {
	switch m := msg.(type) {
	case *Begin:
		if err := d.expectIdle("Begin"); err != nil {
			return err
		}
		d.tx, d.txLSN, d.txXid = txOpen, m.FinalLSN, m.Xid

	case *Commit:
		if d.tx != txOpen {
			return errorf(ErrTxState, "Commit %s, expected an open Begin", d.describe())
		}
		if m.CommitLSN != d.txLSN {
			return errorf(ErrTxState, "Commit LSN %s does not match Begin final LSN %s", m.CommitLSN, d.txLSN)
		}
		d.tx, d.txLSN, d.txXid = txNone, 0, 0

	case *Origin:
		if d.tx == txNone && !d.inStream {
			return errorf(ErrTxState, "Origin outside a transaction or stream block")
		}

	case *Relation, *TypeMsg:
		// Allowed anywhere.

	case *Insert, *Update, *Delete, *Truncate:
		if d.tx == txNone && !d.inStream {
			return errorf(ErrTxState, "%s outside a transaction or stream block", msg.Type())
		}

	case *LogicalMessage:
		if m.Transactional() && d.tx == txNone && !d.inStream {
			return errorf(ErrTxState, "transactional Message outside a transaction or stream block")
		}

	case *StreamStart:
		if d.inStream {
			return errorf(ErrTxState, "StreamStart of xid %d inside the stream block of xid %d, expected StreamStop", m.Xid, d.streamXid)
		}
		if d.tx != txNone {
			return errorf(ErrTxState, "StreamStart %s", d.describe())
		}
		known := slices.Contains(d.openStream, m.Xid)
		switch {
		case m.FirstSegment && known:
			return errorf(ErrTxState, "StreamStart first segment of xid %d, which is already streaming", m.Xid)
		case !m.FirstSegment && !known:
			return errorf(ErrTxState, "StreamStart continues xid %d, which was never started", m.Xid)
		}
		if m.FirstSegment {
			d.openStream = append(d.openStream, m.Xid)
		}
		d.inStream, d.streamXid = true, m.Xid

	case *StreamStop:
		if !d.inStream {
			return errorf(ErrTxState, "StreamStop outside a stream block")
		}
		d.inStream, d.streamXid = false, 0

	case *StreamCommit:
		return d.closeStream("StreamCommit", m.Xid)

	case *StreamAbort:
		if err := d.expectIdle("StreamAbort"); err != nil {
			return err
		}
		i := slices.Index(d.openStream, m.Xid)
		if i < 0 {
			return errorf(ErrTxState, "StreamAbort of xid %d, which was never started in a stream", m.Xid)
		}
		if m.SubXid == m.Xid {
			d.openStream = slices.Delete(d.openStream, i, i+1)
		}

	case *StreamPrepare:
		return d.closeStream("StreamPrepare", m.Xid)

	case *BeginPrepare:
		if err := d.expectIdle("BeginPrepare"); err != nil {
			return err
		}
		d.tx, d.txLSN, d.txXid = txPrepare, m.PrepareLSN, m.Xid

	case *Prepare:
		if d.tx != txPrepare {
			return errorf(ErrTxState, "Prepare %s, expected an open BeginPrepare", d.describe())
		}
		if m.Xid != d.txXid || m.PrepareLSN != d.txLSN {
			return errorf(ErrTxState, "Prepare of xid %d at %s does not match BeginPrepare of xid %d at %s",
				m.Xid, m.PrepareLSN, d.txXid, d.txLSN)
		}
		d.tx, d.txLSN, d.txXid = txNone, 0, 0

	case *CommitPrepared:
		return d.expectIdle("CommitPrepared")

	case *RollbackPrepared:
		return d.expectIdle("RollbackPrepared")
	}
	return nil
}

// expectIdle requires that no transaction and no stream block is open.
func (d *Decoder) expectIdle(what string) error {
	if d.tx != txNone || d.inStream {
		return errorf(ErrTxState, "%s %s, expected no open transaction", what, d.describe())
	}
	return nil
}

// closeStream ends streamed transaction xid with StreamCommit or StreamPrepare.
func (d *Decoder) closeStream(what string, xid uint32) error {
	if err := d.expectIdle(what); err != nil {
		return err
	}
	i := slices.Index(d.openStream, xid)
	if i < 0 {
		return errorf(ErrTxState, "%s of xid %d, which was never started in a stream", what, xid)
	}
	d.openStream = slices.Delete(d.openStream, i, i+1)
	return nil
}

// describe names the open transaction or stream block for error messages.
func (d *Decoder) describe() string {
	switch {
	case d.inStream:
		return "inside the stream block of xid " + strconv.FormatUint(uint64(d.streamXid), 10)
	case d.tx == txOpen:
		return "inside the transaction ending at " + d.txLSN.String()
	case d.tx == txPrepare:
		return "inside the prepared transaction of xid " + strconv.FormatUint(uint64(d.txXid), 10)
	}
	return "outside any transaction"
}
