// Package bench measures pgstream against pg_recvlogical on the same server, the same changes and
// the same machine, and reports the results as ratios.
//
// It holds the pieces the benchmark program (bench/cmd/pgbench, run by `make bench`) is made of:
// the workloads, running a client as a child process and reading its resource usage, the
// in-process commit-to-acknowledged latency probe, the snapshot figure's table, COPY baseline and
// output check, and the Markdown report. Streaming runs set snapshot.mode never, so that they
// measure streaming alone. The Go benchmarks
// BenchmarkPipelineFileMixed and BenchmarkPipelineFileBigTx (pipeline_bench_test.go) run the
// pipeline in-process so that `go test -bench PipelineFile -cpuprofile` profiles it; they start a
// PostgreSQL cluster only when they run. docs/performance.md describes the method and the figures.
//
// Nothing in this package is safe for concurrent use unless its comment says so.
package bench
