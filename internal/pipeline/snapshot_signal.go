package pipeline

import (
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/walparse"
)

// signalTable reads snapshot requests from the rows inserted into snapshot.signal_table: it knows
// the table's relation id and its "tables" column from the stream's Relation messages, and turns a
// row into the tables it names. Used by the replication goroutine only (through snapRequests).
type signalTable struct {
	name string // snapshot.signal_table; "": none
	log  *zap.Logger
	rel  uint32 // relation id of the table once its Relation message arrived
	col  int    // index of its "tables" column, -1 when it has none
	// array reports that the "tables" column is an array (text[] or varchar[]), not a
	// comma-separated list.
	array bool
}

// relation remembers the relation id and the "tables" column of the signal table.
func (s *signalTable) relation(m *walparse.Relation) {
	if s.name == "" {
		return
	}
	schema, table, _ := replication.SplitTable(s.name)
	if m.Namespace != schema || m.Name != table {
		if s.rel == m.RelationID {
			s.rel = 0 // renamed
		}
		return
	}
	s.rel, s.col = m.RelationID, -1
	for i, c := range m.Columns {
		if c.Name == "tables" {
			s.col = i
			s.array = c.TypeOID == textArrayOID || c.TypeOID == varcharArrayOID
		}
	}
	if s.col < 0 {
		s.log.Error("snapshot.signal_table has no column \"tables\"; its rows cannot request snapshots",
			zap.String("signal_table", s.name))
	}
}

// tables returns the tables a row inserted into the signal table names; false when m is not such a
// row, or names none (which is logged).
func (s *signalTable) tables(m *walparse.Insert) ([]string, bool) {
	if m.RelationID != s.rel || s.rel == 0 || s.col < 0 || s.col >= len(m.New.Columns) {
		return nil, false
	}
	c := m.New.Columns[s.col]
	if c.Kind != walparse.TupleText {
		s.log.Error("signal row ignored: its tables column is empty", zap.String("signal_table", s.name))
		return nil, false
	}
	var tables []string
	if s.array {
		var err error
		if tables, err = parseTextArray(string(c.Data)); err != nil {
			s.log.Error("signal row ignored", zap.String("signal_table", s.name), zap.Error(err))
			return nil, false
		}
	} else {
		for _, t := range strings.Split(string(c.Data), ",") {
			if t = strings.TrimSpace(t); t != "" {
				tables = append(tables, t)
			}
		}
	}
	if len(tables) == 0 {
		s.log.Error("signal row ignored: no table named", zap.String("signal_table", s.name))
		return nil, false
	}
	return tables, true
}

// The array types a signal table's "tables" column may have.
const (
	textArrayOID    = 1009
	varcharArrayOID = 1015
)

// parseTextArray parses the text form of a one-dimensional PostgreSQL array of strings, such as
// {public.orders,"public.""odd, name"""}: elements are separated by commas, a quoted element may
// hold commas, braces and backslash-escaped quotes, and NULL elements are left out.
func parseTextArray(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, fmt.Errorf("array value %q: want {…}", s)
	}
	s = s[1 : len(s)-1]
	var out []string
	for i := 0; i < len(s); {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		var elem strings.Builder
		quoted := i < len(s) && s[i] == '"'
		if quoted {
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
					if i == len(s) {
						break
					}
				}
				elem.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("array value: unterminated quoted element")
			}
			i++ // the closing quote
			for i < len(s) && s[i] == ' ' {
				i++
			}
		} else {
			j := strings.IndexByte(s[i:], ',')
			if j < 0 {
				j = len(s) - i
			}
			elem.WriteString(strings.TrimSpace(s[i : i+j]))
			i += j
		}
		if i < len(s) && s[i] != ',' {
			return nil, fmt.Errorf("array value: unexpected %q after an element", s[i])
		}
		i++ // the comma
		if v := elem.String(); v != "" && (quoted || !strings.EqualFold(v, "NULL")) {
			out = append(out, v)
		}
	}
	return out, nil
}
