// Package testport picks TCP ports of 127.0.0.1 for servers that tests start (PostgreSQL, NATS).
//
// A port the kernel hands out for port 0 comes from the ephemeral range, which is also where every
// outgoing connection and every other listener on port 0 gets its port: between the check and the
// server's own bind, or while a server is stopped to be restarted on the same port, anything on the
// machine may take it. Free therefore picks a port below that range, where only an explicit bind
// can land. Callers that bind later must still handle "address already in use" (two tests may pick
// the same port), by picking again or waiting.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the lowest port Free picks.
const lowest = 10000

// Free returns a port of 127.0.0.1 that nothing listened on when it was checked: a random one below
// the ephemeral range when that leaves room, else one the kernel assigns.
func Free() (int, error) {
	if hi := ephemeralLow(); hi-lowest >= 1000 {
		for range 200 {
			p := lowest + rand.IntN(hi-lowest)
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
				l.Close()
				return p, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port of 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's default when unknown).
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				return v
			}
		}
	}
	return 32768
}
