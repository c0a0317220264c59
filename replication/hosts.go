package replication

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// hostGroup is one server named by a source.url and the connection attempts pgconn makes to it, in
// order (with TLS, then without it for sslmode=prefer).
type hostGroup struct {
	addr     string // host:port as messages show it, or the socket directory
	attempts []*pgconn.FallbackConfig
}

// hostGroups lists the servers of pc in the order pgconn tries them.
func hostGroups(pc *pgconn.Config) []hostGroup {
	all := append([]*pgconn.FallbackConfig{{Host: pc.Host, Port: pc.Port, TLSConfig: pc.TLSConfig}}, pc.Fallbacks...)
	var out []hostGroup
	at := map[string]int{}
	for _, a := range all {
		addr := hostAddr(a.Host, a.Port)
		i, ok := at[addr]
		if !ok {
			i = len(out)
			at[addr] = i
			out = append(out, hostGroup{addr: addr})
		}
		out[i].attempts = append(out[i].attempts, a)
	}
	return out
}

// hostAddr is a host and port as messages show them: host:port, or a socket directory alone.
func hostAddr(host string, port uint16) string {
	h := displayHost(host)
	if strings.HasPrefix(h, "/") {
		return h
	}
	return net.JoinHostPort(h, fmt.Sprint(port))
}

func hostAddrs(groups []hostGroup) []string {
	out := make([]string, len(groups))
	for i, g := range groups {
		out[i] = g.addr
	}
	return out
}

// targetsPrimary reports whether connections of pc end only on a server that accepts writes:
// target_session_attrs is read-write or primary (in the URL or PGTARGETSESSIONATTRS). pgconn keeps
// the setting only as the function checking it, so the function is what is compared.
func targetsPrimary(pc *pgconn.Config) bool {
	if pc.ValidateConnect == nil {
		return false
	}
	f := reflect.ValueOf(pc.ValidateConnect).Pointer()
	return f == reflect.ValueOf(pgconn.ValidateConnectTargetSessionAttrsReadWrite).Pointer() ||
		f == reflect.ValueOf(pgconn.ValidateConnectTargetSessionAttrsPrimary).Pointer()
}

// Hosts lists the servers source.url names (host:port, or a socket directory), in the order
// connections try them. A URL of one host gives one.
func (c Config) Hosts() ([]string, error) {
	pc, err := parseURL(c.key(), c.URL)
	if err != nil {
		return nil, err
	}
	return hostAddrs(hostGroups(pc)), nil
}

// ConnectHost opens an ordinary connection, with the credentials, TLS and session settings of
// NewSQLConn, to the one server addr of source.url (as Hosts names it), whatever
// target_session_attrs says: a standby too. It is for inspecting the servers one by one.
func ConnectHost(ctx context.Context, cfg Config, addr string) (*pgconn.PgConn, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, err := cfg.pgConfig(false)
	if err != nil {
		return nil, err
	}
	for _, g := range hostGroups(pc) {
		if g.addr != addr {
			continue
		}
		hc := pc.Copy()
		first := g.attempts[0]
		hc.Host, hc.Port, hc.TLSConfig = first.Host, first.Port, first.TLSConfig
		hc.Fallbacks = g.attempts[1:]
		hc.ValidateConnect = nil
		return dial(ctx, hc)
	}
	return nil, fmt.Errorf("source.url names no host %s", addr)
}
