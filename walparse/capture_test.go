package walparse_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/walparse"
)

var update = flag.Bool("update", false, "capture pgoutput frames from a throwaway PostgreSQL and rewrite testdata")

// A capture is one replication slot streamed with one set of pgoutput options.
type capture struct {
	file string // under testdata
	slot string
	opts walparse.Options
	args []string // pgoutput options besides publication_names and messages
	// twoPhaseSlot creates the slot with two_phase enabled.
	twoPhaseSlot bool
}

var captures = []capture{
	{file: "frames-v1.bin", slot: "cap_v1", opts: walparse.Options{ProtoVersion: 1},
		args: []string{"proto_version '1'"}},
	{file: "frames-v2.bin", slot: "cap_v2", opts: walparse.Options{ProtoVersion: 2},
		args: []string{"proto_version '2'", "streaming 'on'", "binary 'true'"}},
	{file: "frames-v3.bin", slot: "cap_v3", opts: walparse.Options{ProtoVersion: 3},
		args: []string{"proto_version '3'", "streaming 'on'", "two_phase 'on'"}, twoPhaseSlot: true},
}

const endPrefix = "pgstream-capture-end"

// The workload: each entry runs on one connection, statement by statement.
var captureSchema = []string{
	`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`,
	`CREATE DOMAIN posint AS integer CHECK (VALUE > 0)`,
	`CREATE TABLE items (id serial PRIMARY KEY, name text, doc text, m mood, n posint, raw bytea, price numeric(10,2), ts timestamptz)`,
	`ALTER TABLE items ALTER COLUMN doc SET STORAGE EXTERNAL`,
	`CREATE TABLE fulls (id int, v text, doc text)`,
	`ALTER TABLE fulls REPLICA IDENTITY FULL`,
	`ALTER TABLE fulls ALTER COLUMN doc SET STORAGE EXTERNAL`,
	`CREATE TABLE big (id int PRIMARY KEY, payload text)`,
	`CREATE TABLE parent (id int PRIMARY KEY)`,
	`CREATE TABLE child (id serial PRIMARY KEY, parent_id int REFERENCES parent (id))`,
	`CREATE PUBLICATION cap_pub FOR ALL TABLES`,
}

var captureWorkload = []string{
	// Inserts with every kind of value, a TOASTed document, enum and domain columns.
	`INSERT INTO items (name, doc, m, n, raw, price, ts) VALUES
		('a', repeat(md5('doc'), 200), 'happy', 5, '\x0102ff', 12.50, '2024-01-02 03:04:05+00'),
		('b', NULL, 'sad', NULL, NULL, NULL, NULL)`,
	// Unchanged TOAST: the document is not sent again.
	`UPDATE items SET name = 'a2' WHERE id = 1`,
	// Key change: the old key is sent.
	`UPDATE items SET id = 10 WHERE id = 2`,
	`INSERT INTO fulls VALUES (1, 'x', repeat(md5('full'), 200)), (2, 'y', 'short')`,
	`UPDATE fulls SET v = 'x2' WHERE id = 1`,
	`UPDATE fulls SET doc = 'changed' WHERE id = 2`,
	`DELETE FROM items WHERE id = 10`,
	`DELETE FROM fulls WHERE id = 2`,
	`INSERT INTO parent VALUES (1), (2)`,
	`INSERT INTO child (parent_id) VALUES (1), (2)`,
	`TRUNCATE parent, child RESTART IDENTITY CASCADE`,
	`TRUNCATE fulls`,
	// Logical decoding messages, alone and inside a transaction with changes.
	`SELECT pg_logical_emit_message(true, 'pgstream-test', 'transactional')`,
	`SELECT pg_logical_emit_message(false, 'pgstream-test', 'not transactional')`,
	`BEGIN`,
	`INSERT INTO items (name, m, n) VALUES ('with message', 'ok', 1)`,
	`SELECT pg_logical_emit_message(true, 'pgstream-test', '\x000162696e617279'::bytea)`,
	`COMMIT`,
	// A transaction replayed from another node: Origin follows Begin.
	`SELECT pg_replication_origin_create('pgstream-origin')`,
	`SELECT pg_replication_origin_session_setup('pgstream-origin')`,
	`BEGIN`,
	`SELECT pg_replication_origin_xact_setup('0/ABCDEF', '2024-01-02 03:04:05+00')`,
	`INSERT INTO items (name) VALUES ('from origin')`,
	`COMMIT`,
	`SELECT pg_replication_origin_session_reset()`,
	// A transaction larger than logical_decoding_work_mem: streamed with streaming = on.
	`INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, 800) g`,
	// A streamed transaction with an aborted subtransaction.
	`BEGIN`,
	`INSERT INTO big SELECT g, 'sub ' || g FROM generate_series(2001, 2800) g`,
	`SAVEPOINT s1`,
	`INSERT INTO big SELECT g, 'gone ' || g FROM generate_series(4001, 4800) g`,
	`ROLLBACK TO SAVEPOINT s1`,
	`INSERT INTO big VALUES (6000, 'after rollback')`,
	`COMMIT`,
	// A streamed transaction that aborts.
	`BEGIN`,
	`INSERT INTO big SELECT g, 'aborted ' || g FROM generate_series(7001, 7800) g`,
	`ROLLBACK`,
	// Two-phase commit: committed, rolled back, and a large (streamed) prepared transaction.
	`BEGIN`,
	`INSERT INTO items (name) VALUES ('prepared, committed')`,
	`PREPARE TRANSACTION 'pgstream-gid-commit'`,
	`COMMIT PREPARED 'pgstream-gid-commit'`,
	`BEGIN`,
	`INSERT INTO items (name) VALUES ('prepared, rolled back')`,
	`PREPARE TRANSACTION 'pgstream-gid-rollback'`,
	`ROLLBACK PREPARED 'pgstream-gid-rollback'`,
	`BEGIN`,
	`INSERT INTO big SELECT g, 'prepared ' || g FROM generate_series(9001, 9800) g`,
	`PREPARE TRANSACTION 'pgstream-gid-big'`,
	`COMMIT PREPARED 'pgstream-gid-big'`,
	`SELECT pg_logical_emit_message(false, '` + endPrefix + `', '')`,
}

// TestCapture regenerates testdata from a live server. It runs only with -update.
func TestCapture(t *testing.T) {
	if !*update {
		t.Skip("run with -update to capture frames from a throwaway PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{Settings: map[string]string{
		"logical_decoding_work_mem": "64kB",
		"max_prepared_transactions": "10",
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	run := func(stmts []string) {
		for _, s := range stmts {
			if _, err := conn.Exec(ctx, s).ReadAll(); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
	run(captureSchema)
	for _, cp := range captures {
		run([]string{fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput', false, %t)", cp.slot, cp.twoPhaseSlot)})
	}
	run(captureWorkload)

	seedDir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(seedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(seedDir, "captured-*"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	for _, cp := range captures {
		frames := streamSlot(ctx, t, c, cp)
		if err := os.WriteFile(filepath.Join("testdata", cp.file), encodeFrames(frames), 0o644); err != nil {
			t.Fatal(err)
		}
		writeSeeds(t, seedDir, cp, frames)
		t.Logf("%s: %d frames", cp.file, len(frames))
	}
}

// streamSlot replicates cp.slot until the end marker and returns every pgoutput payload.
func streamSlot(ctx context.Context, t *testing.T, c *pgtest.Cluster, cp capture) [][]byte {
	t.Helper()
	rconn, err := pgconn.Connect(ctx, c.URL("postgres")+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	defer rconn.Close(context.Background())
	args := append([]string{"publication_names 'cap_pub'", "messages 'true'"}, cp.args...)
	if err := pglogrepl.StartReplication(ctx, rconn, cp.slot, 0, pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		t.Fatalf("start replication of %s: %v", cp.slot, err)
	}
	var frames [][]byte
	for {
		msg, err := rconn.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receive on %s after %d frames: %v", cp.slot, len(frames), err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("server error on %s: %s", cp.slot, m.Message)
		case *pgproto3.CopyData:
			if len(m.Data) == 0 || m.Data[0] != pglogrepl.XLogDataByteID {
				continue // keepalives: the capture is short enough to need no status updates
			}
			xld, err := pglogrepl.ParseXLogData(m.Data[1:])
			if err != nil {
				t.Fatal(err)
			}
			f := bytes.Clone(xld.WALData)
			frames = append(frames, f)
			if f[0] == byte(walparse.TypeMessage) && bytes.Contains(f, []byte(endPrefix)) {
				return frames
			}
		}
	}
}

// encodeFrames writes frames as a sequence of big-endian uint32 lengths each followed by a frame.
func encodeFrames(frames [][]byte) []byte {
	var out []byte
	for _, f := range frames {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

func decodeFrames(b []byte) ([][]byte, error) {
	var frames [][]byte
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, errors.New("truncated length")
		}
		n := int(binary.BigEndian.Uint32(b))
		if n > len(b)-4 {
			return nil, fmt.Errorf("frame of %d bytes exceeds the %d left", n, len(b)-4)
		}
		frames = append(frames, b[4:4+n])
		b = b[4+n:]
	}
	return frames, nil
}

// writeSeeds keeps the first few frames of each message type (and old tuple kind) as fuzz seeds.
func writeSeeds(t *testing.T, dir string, cp capture, frames [][]byte) {
	t.Helper()
	seen := map[string]int{}
	for i, f := range frames {
		key := string(f[:1])
		if (f[0] == 'U' || f[0] == 'D') && len(f) > 5 {
			key += string(f[5:6]) // the marker when not streamed; good enough to vary the seeds
		}
		if seen[key] >= 3 {
			continue
		}
		seen[key]++
		name := fmt.Sprintf("captured-%s-%04d-%s", strings.TrimSuffix(cp.file, ".bin"), i, walparse.MessageType(f[0]))
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", f)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func loadCapture(t *testing.T, cp capture) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", cp.file))
	if err != nil {
		t.Fatalf("%v (run go test -run TestCapture -update ./walparse/ to capture)", err)
	}
	frames, err := decodeFrames(b)
	if err != nil {
		t.Fatalf("%s: %v", cp.file, err)
	}
	return frames
}

// TestCapturedFrames decodes every captured frame in order and checks that the workload shows up as
// expected for each protocol version.
func TestCapturedFrames(t *testing.T) {
	for _, cp := range captures {
		t.Run(cp.file, func(t *testing.T) {
			frames := loadCapture(t, cp)
			d := walparse.NewDecoder(cp.opts)
			count := map[string]int{}
			var gids, prefixes []string
			relNames := map[uint32]string{}
			for i, f := range frames {
				m, err := d.Decode(f)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				count[m.Type().String()]++
				switch m := m.(type) {
				case *walparse.Origin:
					count[fmt.Sprintf("Origin %s at %s", m.Name, m.CommitLSN)]++
				case *walparse.Relation:
					relNames[m.RelationID] = m.Name
				case *walparse.TypeMsg:
					count["Type "+m.Name]++
				case *walparse.Insert:
					countKinds(count, "Insert", m.New)
				case *walparse.Update:
					count["Update old "+string(rune(m.OldKind))]++
					countKinds(count, "Update", m.New)
				case *walparse.Delete:
					count["Delete old "+string(rune(m.OldKind))]++
				case *walparse.Truncate:
					count[fmt.Sprintf("Truncate options %d relations %d", m.Options, len(m.RelationIDs))]++
				case *walparse.LogicalMessage:
					prefixes = append(prefixes, fmt.Sprintf("%s/%t/%q", m.Prefix, m.Transactional(), m.Content))
				case *walparse.StreamStart:
					if m.FirstSegment {
						count["StreamStart first"]++
					} else {
						count["StreamStart next"]++
					}
				case *walparse.StreamAbort:
					if m.Xid == m.SubXid {
						count["StreamAbort top"]++
					} else {
						count["StreamAbort sub"]++
					}
				case *walparse.BeginPrepare:
					gids = append(gids, "begin "+m.GID)
				case *walparse.Prepare:
					gids = append(gids, "prepare "+m.GID)
				case *walparse.StreamPrepare:
					gids = append(gids, "stream prepare "+m.GID)
				case *walparse.CommitPrepared:
					gids = append(gids, "commit "+m.GID)
				case *walparse.RollbackPrepared:
					gids = append(gids, "rollback "+m.GID)
				}
			}
			if d.InTransaction() {
				t.Error("capture ends inside a transaction")
			}
			if _, in := d.InStream(); in {
				t.Error("capture ends inside a stream block")
			}
			t.Logf("%s: %d frames, %v", cp.file, len(frames), count)

			want := []string{"Begin", "Commit", "Relation", "Type mood", "Type int4", "Insert", "Update", "Delete",
				"Update old K", "Update old O", "Update old \x00", "Delete old K", "Delete old O",
				"Truncate options 3 relations 2", "Truncate options 0 relations 1", "Message",
				"Origin pgstream-origin at 0/ABCDEF"}
			if strings.Contains(strings.Join(cp.args, ","), "binary") {
				want = append(want, "Insert kind b", "Update kind b")
			} else {
				want = append(want, "Insert kind t", "Update kind t")
			}
			want = append(want, "Insert kind n", "Update kind u")
			if cp.opts.ProtoVersion >= 2 {
				want = append(want, "StreamStart first", "StreamStart next", "StreamStop", "StreamAbort top", "StreamAbort sub")
			}
			if cp.opts.ProtoVersion == 2 {
				want = append(want, "StreamCommit")
			}
			for _, w := range want {
				if count[w] == 0 {
					t.Errorf("no %q in the capture", w)
				}
			}
			wantPrefixes := []string{
				`pgstream-test/true/"transactional"`,
				`pgstream-test/false/"not transactional"`,
				`pgstream-test/true/"\x00\x01binary"`,
				endPrefix + `/false/""`,
			}
			if got := strings.Join(prefixes, "\n"); got != strings.Join(wantPrefixes, "\n") {
				t.Errorf("messages:\n%s\nwant\n%s", got, strings.Join(wantPrefixes, "\n"))
			}
			var wantGIDs []string
			if cp.opts.ProtoVersion >= 3 {
				wantGIDs = []string{
					"begin pgstream-gid-commit", "prepare pgstream-gid-commit", "commit pgstream-gid-commit",
					"begin pgstream-gid-rollback", "prepare pgstream-gid-rollback", "rollback pgstream-gid-rollback",
					"stream prepare pgstream-gid-big", "commit pgstream-gid-big",
				}
			}
			if strings.Join(gids, ",") != strings.Join(wantGIDs, ",") {
				t.Errorf("two-phase messages %v, want %v", gids, wantGIDs)
			}
			for _, name := range []string{"items", "fulls", "big", "parent", "child"} {
				found := false
				for _, n := range relNames {
					found = found || n == name
				}
				if !found {
					t.Errorf("no Relation for %s", name)
				}
			}
		})
	}
}

func countKinds(count map[string]int, what string, tup walparse.Tuple) {
	for _, c := range tup.Columns {
		count[what+" kind "+string(rune(c.Kind))]++
	}
}

// TestDifferentialPglogrepl decodes every captured frame with the Decoder and with pglogrepl and
// compares the results field by field. pglogrepl knows no two-phase messages; those are only decoded.
func TestDifferentialPglogrepl(t *testing.T) {
	for _, cp := range captures {
		t.Run(cp.file, func(t *testing.T) {
			frames := loadCapture(t, cp)
			d := walparse.NewDecoder(cp.opts)
			compared := 0
			for i, f := range frames {
				_, inStream := d.InStream()
				m, err := d.Decode(f)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if v, _ := minVersion(m.Type()); v >= 3 {
					continue
				}
				var ref pglogrepl.Message
				if cp.opts.ProtoVersion == 1 {
					ref, err = pglogrepl.Parse(f)
				} else {
					ref, err = pglogrepl.ParseV2(f, inStream)
				}
				if err != nil {
					t.Fatalf("frame %d: pglogrepl: %v", i, err)
				}
				want, err := fromPglogrepl(ref)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if show(m) != show(want) {
					t.Fatalf("frame %d (%x):\nwalparse  %s\npglogrepl %s", i, f, show(m), show(want))
				}
				compared++
			}
			t.Logf("%s: %d of %d frames compared", cp.file, compared, len(frames))
			if compared == 0 {
				t.Fatal("nothing compared")
			}
		})
	}
}

func lsnOf(l pglogrepl.LSN) lsn.LSN { return lsn.LSN(l) }

func minVersion(t walparse.MessageType) (int, bool) {
	switch t {
	case walparse.TypeStreamStart, walparse.TypeStreamStop, walparse.TypeStreamCommit, walparse.TypeStreamAbort:
		return 2, true
	case walparse.TypeBeginPrepare, walparse.TypePrepare, walparse.TypeCommitPrepared, walparse.TypeRollbackPrepared, walparse.TypeStreamPrepare:
		return 3, true
	}
	return 1, true
}

// fromPglogrepl converts a pglogrepl message to the walparse message it should decode to.
func fromPglogrepl(m pglogrepl.Message) (walparse.Message, error) {
	ts := walparse.TimestampFromTime
	tuple := func(td *pglogrepl.TupleData) walparse.Tuple {
		var t walparse.Tuple
		if td == nil {
			return t
		}
		for _, c := range td.Columns {
			t.Columns = append(t.Columns, walparse.TupleColumn{Kind: c.DataType, Data: c.Data})
		}
		return t
	}
	relation := func(r *pglogrepl.RelationMessage, xid uint32) *walparse.Relation {
		out := &walparse.Relation{Xid: xid, RelationID: r.RelationID, Namespace: r.Namespace, Name: r.RelationName, ReplicaIdentity: r.ReplicaIdentity}
		for _, c := range r.Columns {
			out.Columns = append(out.Columns, walparse.RelationColumn{Flags: c.Flags, Name: c.Name, TypeOID: c.DataType, TypeMod: c.TypeModifier})
		}
		return out
	}
	typ := func(r *pglogrepl.TypeMessage, xid uint32) *walparse.TypeMsg {
		return &walparse.TypeMsg{Xid: xid, TypeOID: r.DataType, Namespace: r.Namespace, Name: r.Name}
	}
	insert := func(r *pglogrepl.InsertMessage, xid uint32) *walparse.Insert {
		return &walparse.Insert{Xid: xid, RelationID: r.RelationID, New: tuple(r.Tuple)}
	}
	upd := func(r *pglogrepl.UpdateMessage, xid uint32) *walparse.Update {
		return &walparse.Update{Xid: xid, RelationID: r.RelationID, OldKind: r.OldTupleType, Old: tuple(r.OldTuple), New: tuple(r.NewTuple)}
	}
	del := func(r *pglogrepl.DeleteMessage, xid uint32) *walparse.Delete {
		return &walparse.Delete{Xid: xid, RelationID: r.RelationID, OldKind: r.OldTupleType, Old: tuple(r.OldTuple)}
	}
	trunc := func(r *pglogrepl.TruncateMessage, xid uint32) *walparse.Truncate {
		return &walparse.Truncate{Xid: xid, Options: r.Option, RelationIDs: r.RelationIDs}
	}
	logical := func(r *pglogrepl.LogicalDecodingMessage, xid uint32) *walparse.LogicalMessage {
		var flags uint8
		if r.Transactional {
			flags = walparse.MessageFlagTransactional
		}
		return &walparse.LogicalMessage{Xid: xid, Flags: flags, LSN: lsnOf(r.LSN), Prefix: []byte(r.Prefix), Content: r.Content}
	}
	switch r := m.(type) {
	case *pglogrepl.BeginMessage:
		return &walparse.Begin{FinalLSN: lsnOf(r.FinalLSN), CommitTime: ts(r.CommitTime), Xid: r.Xid}, nil
	case *pglogrepl.CommitMessage:
		return &walparse.Commit{Flags: r.Flags, CommitLSN: lsnOf(r.CommitLSN), EndLSN: lsnOf(r.TransactionEndLSN), CommitTime: ts(r.CommitTime)}, nil
	case *pglogrepl.OriginMessage:
		return &walparse.Origin{CommitLSN: lsnOf(r.CommitLSN), Name: r.Name}, nil
	case *pglogrepl.RelationMessage:
		return relation(r, 0), nil
	case *pglogrepl.RelationMessageV2:
		return relation(&r.RelationMessage, r.Xid), nil
	case *pglogrepl.TypeMessage:
		return typ(r, 0), nil
	case *pglogrepl.TypeMessageV2:
		return typ(&r.TypeMessage, r.Xid), nil
	case *pglogrepl.InsertMessage:
		return insert(r, 0), nil
	case *pglogrepl.InsertMessageV2:
		return insert(&r.InsertMessage, r.Xid), nil
	case *pglogrepl.UpdateMessage:
		return upd(r, 0), nil
	case *pglogrepl.UpdateMessageV2:
		return upd(&r.UpdateMessage, r.Xid), nil
	case *pglogrepl.DeleteMessage:
		return del(r, 0), nil
	case *pglogrepl.DeleteMessageV2:
		return del(&r.DeleteMessage, r.Xid), nil
	case *pglogrepl.TruncateMessage:
		return trunc(r, 0), nil
	case *pglogrepl.TruncateMessageV2:
		return trunc(&r.TruncateMessage, r.Xid), nil
	case *pglogrepl.LogicalDecodingMessage:
		return logical(r, 0), nil
	case *pglogrepl.LogicalDecodingMessageV2:
		return logical(&r.LogicalDecodingMessage, r.Xid), nil
	case *pglogrepl.StreamStartMessageV2:
		return &walparse.StreamStart{Xid: r.Xid, FirstSegment: r.FirstSegment == 1}, nil
	case *pglogrepl.StreamStopMessageV2:
		return &walparse.StreamStop{}, nil
	case *pglogrepl.StreamCommitMessageV2:
		return &walparse.StreamCommit{Xid: r.Xid, Flags: r.Flags, CommitLSN: lsnOf(r.CommitLSN), EndLSN: lsnOf(r.TransactionEndLSN), CommitTime: ts(r.CommitTime)}, nil
	case *pglogrepl.StreamAbortMessageV2:
		return &walparse.StreamAbort{Xid: r.Xid, SubXid: r.SubXid}, nil
	}
	return nil, fmt.Errorf("unexpected pglogrepl message %T", m)
}
