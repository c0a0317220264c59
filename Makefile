GO      ?= go
BIN     := bin/pgstream
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all setup build demo test test-versions test-short test-stress vet fuzz bench bench-quick clean

all: build

setup:
	@bash scripts/setup.sh

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/pgstream

# Starts a throwaway PostgreSQL, runs a live workload and streams it to stdout for 20 s.
demo: setup
	$(GO) run ./cmd/pgstream demo --duration 20s

# The whole suite, with the race detector, on the machine's PostgreSQL (Debian's 15), then the
# contract tests on PostgreSQL 14, 16, 17 and 18 (test-versions). Tests start their own PostgreSQL
# clusters, an in-process Kafka, and use the local nats-server or an embedded one.
test: setup
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m -p 2 ./...
	bash scripts/test-versions.sh

# The protocol, server inspection, catalog and snapshot packages and the end-to-end contract tests
# against each of PostgreSQL 14, 16, 17 and 18, whose server binaries scripts/postgres.sh installs
# into a cache.
# PG_VERSIONS="17 18" and VERSION_RUN='^TestFailover' narrow it.
test-versions: setup
	bash scripts/test-versions.sh

# The tests that kill, promote, partition or restart something (scripts/disruptive-tests.txt, each
# on the PostgreSQL version it needs), each run STRESS_COUNT times (default 5) with one core kept
# busy: a test that passes only on a quiet machine fails here. STRESS_PKGS and STRESS_RUN run other
# tests instead, e.g. make test-stress STRESS_PKGS=./replication/ STRESS_RUN=TestTLS STRESS_COUNT=10.
test-stress: setup
	bash scripts/stress.sh

test-short: setup
	$(GO) test -short -timeout 10m ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 60s ./walparse/

# pgstream against pg_recvlogical on a throwaway PostgreSQL: throughput, client CPU, peak RSS,
# latency, a CPU profile and the decoder/encoder micro-benchmarks; and an initial snapshot of a
# 2,000,000-row table against COPY. Report: bench/out/results.md.
# BENCH_FLAGS adds flags, e.g. make bench BENCH_FLAGS="-repeats 5" or BENCH_FLAGS="-phases snapshot".
# make bench BENCH_FLAGS="-baseline REV" also builds pgstream at git revision REV and measures it in
# the same run, with current/baseline ratios and a "no regression against REV" target per phase.
# The mixed and bigtx phases also measure pgstream with its metrics endpoint on and scraped every
# second beside the same client with it off, with on/off ratios and a "metrics endpoint costs < 5%"
# target; BENCH_FLAGS="-endpoint=false" leaves that out.
bench: setup
	$(GO) run ./bench/cmd/pgbench -out bench/out $(BENCH_FLAGS)

# The same at a tenth of the size, one repeat each: a couple of minutes.
bench-quick: setup
	$(GO) run ./bench/cmd/pgbench -out bench/out -rows 100000 -bigtx-rows 100000 -snapshot-rows 200000 -repeats 1 $(BENCH_FLAGS)

clean:
	rm -rf bin bench/out
