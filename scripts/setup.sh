#!/usr/bin/env bash
# Installs what pgstream's build, tests and demo need and a fresh machine may lack:
# the PostgreSQL server binaries (initdb, postgres, pg_ctl, pg_recvlogical; psql for the benchmark's
# COPY reference), promtool (to check docs/monitoring's alert rules and the metrics' exposition) and
# the Go modules.
# NATS and Kafka need nothing here: tests use the nats-server on 127.0.0.1:4222 when one runs and
# an embedded one otherwise, and an in-process Kafka (kfake).
set -euo pipefail
cd "$(dirname "$0")/.."

have_pg() {
  [ -n "${PGSTREAM_PG_BIN:-}" ] && [ -x "$PGSTREAM_PG_BIN/initdb" ] && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  else
    echo "setup: Go is not installed; install Go 1.26 or newer (https://go.dev/dl/) and run again" >&2
    exit 1
  fi
fi

if ! have_pg || ! command -v pg_recvlogical >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "setup: PostgreSQL server binaries are missing; install the 'postgresql' package (Debian/Ubuntu) or set PGSTREAM_PG_BIN to a directory holding initdb" >&2
    exit 1
  fi
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing PostgreSQL server binaries (apt-get install postgresql)…" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql postgresql-client >/dev/null
  # The package starts a cluster of its own on 5432; pgstream's tests never use it.
fi

if ! command -v promtool >/dev/null 2>&1; then
  # Debian's prometheus package carries promtool. Only the binary is used: no Prometheus has to run.
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "setup: promtool is missing; install the 'prometheus' package (Debian/Ubuntu) or put promtool on PATH" >&2
    exit 1
  fi
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing promtool (apt-get install prometheus)…" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  # Test clusters run as this user when the tests run as root (initdb refuses root).
  useradd --system --home /var/lib/postgresql --shell /bin/bash postgres
fi

go mod download
