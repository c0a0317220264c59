#!/usr/bin/env bash
# Runs the tests that prove pgstream's contract against every supported PostgreSQL version other
# than the default suite's: each version's server binaries come from scripts/postgres.sh, and
# PGSTREAM_PG_MAJOR makes a test fail if it met another version.
#
#   PG_VERSIONS   the major versions (default "14 16 17 18"; the default suite runs on 15)
#   VERSION_RUN   the -run pattern of the end-to-end tests (default: the contract below)
#   VERSION_PKGS  the packages run whole (default: replication, inspect, events and snapshot; "" for none)
set -euo pipefail
cd "$(dirname "$0")/.."

versions="${PG_VERSIONS:-14 16 17 18}"
# Every op and value, TOAST and both replica identities, schema changes, transactions, crash safety
# under SIGKILL, snapshot + stream, the database gone back in time, and what only some versions
# have (failover slots, decoding from a standby, the slot's columns and idle timeout, a lost slot's
# cause, a dropped publication's error or warning). The protocol, server inspection, catalog and
# snapshot packages run whole.
contract='^(TestEveryOperation|TestValueMapping|TestReplicaIdentityFullAndToast|TestSchemaChangeMidStream|TestRollbackAndSavepointsAreInvisible|TestCopyRowsGetTheirOwnIDs|TestCrashSafety|TestSnapshotConsistentUnderLoad|TestOnlineResnapshot|TestDatabaseWentBackInTime|TestCheckCommandOnAHealthyServer|TestFailover.*|TestStandbyDecoding.*|TestSlotFieldsByVersion|TestLostSlotRefused|TestHeartbeatsOutliveADroppedPublication)$'
run="${VERSION_RUN:-$contract}"
pkgs="${VERSION_PKGS-./replication/ ./internal/inspect/ ./internal/events/ ./internal/snapshot/}"

failed=""
for major in $versions; do
  bin="$(bash scripts/postgres.sh "$major")"
  echo "== PostgreSQL $major ($bin)"
  start=$SECONDS
  export PGSTREAM_PG_BIN="$bin" PGSTREAM_PG_MAJOR="$major"
  # The packages run whole beside the end-to-end tests: two processes for the two cores.
  pkgs_ok=0
  if [ -n "$pkgs" ]; then
    # shellcheck disable=SC2086
    go test -race -count=1 -timeout 20m -p 1 $pkgs &
    pid=$!
  fi
  e2e_ok=0
  if [ -n "$run" ]; then
    go test -race -count=1 -timeout 20m -run "$run" ./internal/e2e/ || e2e_ok=$?
  fi
  if [ -n "$pkgs" ]; then
    wait "$pid" || pkgs_ok=$?
  fi
  if [ "$pkgs_ok" -eq 0 ] && [ "$e2e_ok" -eq 0 ]; then
    echo "== PostgreSQL $major: ok ($((SECONDS - start)) s)"
  else
    echo "== PostgreSQL $major: FAILED ($((SECONDS - start)) s)"
    failed="$failed $major"
  fi
done
if [ -n "$failed" ]; then
  echo "test-versions: failed on PostgreSQL$failed" >&2
  exit 1
fi
