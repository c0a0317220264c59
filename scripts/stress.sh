#!/usr/bin/env bash
# Repeats the packages whose tests depend most on timing (real servers, processes killed and
# restarted, deadlines) with the race detector while a busy loop keeps one core occupied, so that a
# test relying on luck shows itself before CI meets it.
#   STRESS_COUNT  runs of each test (default 3)
#   STRESS_PKGS   packages (default: replication, internal/e2e, internal/pipeline, checkpoint, sinks)
#   STRESS_RUN    a -run pattern (default: every test)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${STRESS_COUNT:-3}
pkgs=${STRESS_PKGS:-./replication/ ./internal/e2e/ ./internal/pipeline/ ./checkpoint/ ./sinks/...}
run=${STRESS_RUN:-.}
( while :; do :; done ) &
burner=$!
trap 'kill "$burner" 2>/dev/null || true' EXIT
echo "stress: $count runs of each test in $pkgs with one core kept busy (pid $burner)" >&2
# One test process per round: some packages create fixed-name objects on their shared cluster, so
# a second run inside the same process (-count=2) would meet the first one's leftovers.
for round in $(seq 1 "$count"); do
  echo "stress: round $round of $count" >&2
  # shellcheck disable=SC2086 # the package list is split on purpose
  go test -race -count=1 -run "$run" -timeout 90m -p 1 $pkgs
done
