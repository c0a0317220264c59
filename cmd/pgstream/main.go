// Command pgstream streams PostgreSQL changes from a logical replication slot to stdout, files,
// Kafka and NATS JetStream, moving the slot only past what every sink holds durably.
//
//	pgstream run --config FILE     stream until SIGINT/SIGTERM
//	pgstream check --config FILE   check the server, the checkpoint and the sinks, and say how to fix what is wrong
//	pgstream status --config FILE  where the pgstream of a configuration stands; exit 0 healthy, 1 degraded, 2 broken
//	pgstream snapshot --config FILE --table T   re-read a table while the running pgstream keeps streaming
//	pgstream demo                  a throwaway local PostgreSQL with a live workload, streamed to stdout
//	pgstream version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `pgstream streams PostgreSQL changes to stdout, files, Kafka and NATS JetStream.

Usage:
  pgstream run     --config FILE   stream changes until SIGINT or SIGTERM
  pgstream check   --config FILE   check server, checkpoint and sinks; print what to fix
  pgstream status  --config FILE [--json]
                                   where pgstream stands (its endpoint, or the server and checkpoint);
                                   exit 0 healthy, 1 degraded, 2 broken
  pgstream snapshot --config FILE --table SCHEMA.TABLE [--table …]
                                   re-read tables into the sinks while pgstream keeps streaming
  pgstream demo    [--duration D]  stream a live workload from a throwaway local PostgreSQL to stdout
  pgstream version                 print the version

Configuration: a YAML file (see configs/pgstream.yaml); PGSTREAM_* environment variables override
it (PGSTREAM_SOURCE_URL sets source.url), and flags override both.
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain is the one place that decides the exit code: 0 success, 1 runtime failure, 2 bad usage
// or configuration (status: 0 healthy, 1 degraded, 2 broken).
func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "pgstream %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	case "run", "check":
		fs := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
		fs.SetOutput(stderr)
		addConfigFlags(fs)
		if err := fs.Parse(args); err != nil {
			return 2
		}
		cfg, err := loadConfig(fs)
		if err != nil {
			fmt.Fprintf(stderr, "pgstream: %v\n", err)
			return 2
		}
		var bar *progressBar
		logOut := stderr
		if cmd == "run" {
			if bar = newProgressBar(stderr); bar != nil {
				logOut = bar
			}
		}
		log, err := newLogger(cfg.Log.Level, cfg.Log.Format, logOut, isTerminal(stderr))
		if err != nil {
			fmt.Fprintf(stderr, "pgstream: %v\n", err)
			return 2
		}
		defer log.Sync() //nolint:errcheck
		warnings := secretFileWarnings(cfg)
		for _, w := range warnings {
			log.Warn(w.Subject+" "+w.Message, zap.String("fix", w.Fix))
		}
		ctx, stop := signalContext()
		defer stop()
		if cmd == "check" {
			for _, w := range warnings {
				fmt.Fprintf(stdout, "WARN  %s\n      %s\n      fix: %s\n", w.Subject, w.Message, w.Fix)
			}
			return runCheck(ctx, cfg, log, stdout)
		}
		if err := runStream(ctx, cfg, log, stdout, bar); err != nil {
			if ctx.Err() != nil && errors.Is(err, context.Canceled) {
				// SIGINT or SIGTERM cut short something that was waiting, such as a sink still being
				// reached at start-up: the stop was asked for, and nothing unacknowledged was confirmed.
				log.Info("pgstream stopped", zap.String("interrupted", err.Error()))
				return 0
			}
			log.Error("pgstream stopped with an error", zap.Error(err))
			fmt.Fprintf(stderr, "pgstream: %v\n", err)
			return 1
		}
		return 0
	case "status":
		return runStatus(args, stdout, stderr)
	case "snapshot":
		return runSnapshotRequest(args, stdout, stderr)
	case "demo":
		return runDemo(args, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "pgstream: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return version
}

// signalContext ends on the first SIGINT or SIGTERM; a second one kills the process the default way.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
			signal.Reset(syscall.SIGINT, syscall.SIGTERM)
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newLogger logs to w; tty says whether w ends on a terminal (format auto is console there).
func newLogger(level, format string, w io.Writer, tty bool) (*zap.Logger, error) {
	lvl := zapcore.InfoLevel
	if level != "" {
		if err := lvl.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("log.level: %w", err)
		}
	}
	if format == "" || format == "auto" {
		format = "json"
		if tty {
			format = "console"
		}
	}
	var enc zapcore.Encoder
	switch format {
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(ec)
	case "json":
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	default:
		return nil, errors.New("log.format: use auto, console or json")
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}
