package replication

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgstream/pgstream/lsn"
)

// TimelineSwitch is one entry of a timeline history: the WAL of Timeline ends at End, where the
// next timeline of the history forked from it.
type TimelineSwitch struct {
	Timeline int32
	End      lsn.LSN
}

// TimelineHistory runs TIMELINE_HISTORY tli and returns the timelines that led to tli, oldest
// first. Timeline 1 has no history: it returns nil without asking the server.
func (c *Conn) TimelineHistory(ctx context.Context, tli int32) ([]TimelineSwitch, error) {
	if tli <= 1 {
		return nil, nil
	}
	what := fmt.Sprintf("TIMELINE_HISTORY %d", tli)
	rows, err := c.query(ctx, what)
	if err != nil {
		return nil, c.classifyCommand(ctx, what, err)
	}
	if len(rows) != 1 || len(rows[0]) < 2 {
		return nil, fmt.Errorf("%s: %w: want 1 row of 2 columns, got %d rows", what, ErrProtocol, len(rows))
	}
	h, err := ParseTimelineHistory(rows[0][1])
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", what, ErrProtocol, err)
	}
	return h, nil
}

// ParseTimelineHistory parses the content of a timeline history file: one line per earlier
// timeline, "timeline<TAB>switchpoint<TAB>reason", with blank lines and # comments ignored. Content
// sent as bytea in hex form (\x…) is decoded first.
func ParseTimelineHistory(content string) ([]TimelineSwitch, error) {
	if hexed, ok := strings.CutPrefix(content, `\x`); ok {
		b, err := hex.DecodeString(hexed)
		if err != nil {
			return nil, fmt.Errorf("timeline history: %v", err)
		}
		content = string(b)
	}
	var out []TimelineSwitch
	for i, line := range strings.Split(content, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("timeline history line %d: %q: want a timeline and a switch point", i+1, line)
		}
		tli, err := strconv.ParseInt(f[0], 10, 32)
		if err != nil || tli < 1 {
			return nil, fmt.Errorf("timeline history line %d: timeline %q", i+1, f[0])
		}
		end, err := lsn.Parse(f[1])
		if err != nil {
			return nil, fmt.Errorf("timeline history line %d: %v", i+1, err)
		}
		out = append(out, TimelineSwitch{Timeline: int32(tli), End: end})
	}
	return out, nil
}
