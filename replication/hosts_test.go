package replication

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestMultiHostURL(t *testing.T) {
	for _, tc := range []struct {
		url   string
		hosts []string
		err   string // "" for valid
	}{
		{url: "postgres://u:pw@a:5432,b:5433/db?target_session_attrs=read-write", hosts: []string{"a:5432", "b:5433"}},
		{url: "postgres://u:pw@a,b/db?target_session_attrs=primary&sslmode=prefer", hosts: []string{"a:5432", "b:5432"}},
		{url: "host=a,b port=1,2 user=u password=pw dbname=db target_session_attrs=read-write", hosts: []string{"a:1", "b:2"}},
		// sslmode=prefer tries each host twice (TLS, then not): still one host.
		{url: "postgres://u:pw@a:5432/db?sslmode=prefer", hosts: []string{"a:5432"}},
		{url: "postgres://u:pw@a:5432,b:5433/db", err: "names 2 hosts (a:5432, b:5433) without target_session_attrs=read-write or primary"},
		{url: "postgres://u:pw@a:5432,b:5433/db?target_session_attrs=any", err: "add target_session_attrs=read-write"},
		{url: "postgres://u:pw@a:5432,b:5433/db?target_session_attrs=prefer-standby", err: "pgstream could connect to a standby"},
	} {
		c := Config{URL: tc.url}
		err := c.Validate()
		if tc.err != "" {
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "pw") {
				t.Errorf("Validate(%q) = %v, want an error saying %q", tc.url, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Validate(%q) = %v", tc.url, err)
			continue
		}
		hosts, err := c.Hosts()
		if err != nil || fmt.Sprint(hosts) != fmt.Sprint(tc.hosts) {
			t.Errorf("Hosts(%q) = %v, %v; want %v", tc.url, hosts, err, tc.hosts)
		}
	}
}

func TestRedactMultiHostURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://app:hunter2@10.0.0.1:5432,10.0.0.2:5432/app?target_session_attrs=read-write": "postgres://app:xxxxx@10.0.0.1:5432,10.0.0.2:5432/app?target_session_attrs=read-write",
		"source postgres://app:Alpha7@Bravo9@h1,h2:5433/app?target_session_attrs=primary failed": "source postgres://app:xxxxx@h1,h2:5433/app?target_session_attrs=primary failed",
		"host=h1,h2 port=5432,5433 user=app password=hunter2 target_session_attrs=read-write":    "host=h1,h2 port=5432,5433 user=app password=xxxxx target_session_attrs=read-write",
		"postgres://app@h1,h2/app?password=hunter2&target_session_attrs=read-write":              "postgres://app@h1,h2/app?password=xxxxx&target_session_attrs=read-write",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every server that answered was a standby: a failover in progress, worth waiting for.
func TestConnectToStandbysOnlyIsRetryable(t *testing.T) {
	for _, cause := range []error{
		errors.Join(fmt.Errorf("a: %w", syscall.ECONNREFUSED), fmt.Errorf("b: ValidateConnect failed: %w", pgconn.ErrReadOnlyConnection)),
		fmt.Errorf("b: ValidateConnect failed: %w", pgconn.ErrStandbyConnection),
	} {
		err := classifyConnect("a:5432, b:5432", "u", "db", cause)
		if !errors.Is(err, ErrUnreachable) || !IsRetryable(err) || !strings.Contains(err.Error(), "no server that answered is the primary") {
			t.Errorf("classifyConnect(%v) = %v; want a retryable ErrUnreachable saying no server is the primary", cause, err)
		}
	}
}
