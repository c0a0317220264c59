#!/usr/bin/env bash
# Repeats tests with the race detector while a busy loop keeps one core occupied, so that a test
# relying on luck shows itself before CI meets it.
#
# By default it runs the tests that kill, promote, partition or restart something, listed in
# scripts/disruptive-tests.txt with the PostgreSQL version each needs, STRESS_COUNT times (default 5).
# STRESS_PKGS (and optionally STRESS_RUN) runs those packages instead, on the default server:
#   make test-stress STRESS_PKGS=./replication/ STRESS_RUN=TestTLS STRESS_COUNT=10
set -euo pipefail
cd "$(dirname "$0")/.."
count=${STRESS_COUNT:-5}
( while :; do :; done ) &
burner=$!
trap 'kill "$burner" 2>/dev/null || true' EXIT

if [ -n "${STRESS_PKGS:-}" ]; then
  echo "stress: $count runs of each test in $STRESS_PKGS with one core kept busy (pid $burner)" >&2
  for round in $(seq 1 "$count"); do
    echo "stress: round $round of $count" >&2
    # shellcheck disable=SC2086 # the package list is split on purpose
    go test -race -count=1 -run "${STRESS_RUN:-.}" -timeout 90m -p 1 $STRESS_PKGS
  done
  exit 0
fi

# One line a group: package, -run pattern, PostgreSQL major ("-" for the default).
groups="$(grep -v '^[[:space:]]*\(#\|$\)' scripts/disruptive-tests.txt)"

echo "stress: $count runs of each test with one core kept busy (pid $burner)" >&2
failed=0
for round in $(seq 1 "$count"); do
  while read -r pkgs run major; do
    [ -n "$pkgs" ] || continue
    env=()
    if [ "$major" != "-" ]; then
      bin="$(bash scripts/postgres.sh "$major")"
      env=(PGSTREAM_PG_BIN="$bin" PGSTREAM_PG_MAJOR="$major")
    fi
    echo "stress: round $round of $count: $pkgs $run (PostgreSQL ${major/-/default})" >&2
    # One test process per round: every run starts from fresh clusters.
    # shellcheck disable=SC2086 # the package list is split on purpose
    if ! env "${env[@]}" go test -race -count=1 -run "$run" -timeout 60m -p 1 $pkgs; then
      echo "stress: FAILED in round $round: $pkgs $run (PostgreSQL ${major/-/default})" >&2
      failed=1
    fi
  done <<< "$groups"
done
if [ "$failed" -ne 0 ]; then
  echo "stress: some runs failed (see above)" >&2
  exit 1
fi
echo "stress: all $count rounds passed" >&2
