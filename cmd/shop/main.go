// Command shop runs the perfscale ordering service. On its embedded default
// it needs nothing but a directory: the catalog, sessions, carts, orders and
// the job queue live in one SQLite file, seeded on first start.
//
// The command only wires: config.go turns flags and the environment into
// an app.Config, and shop/app builds and runs the service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/perfscale/perfscale/shop/app"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/httpapi"
	"github.com/perfscale/perfscale/shop/jobs"
	shopnats "github.com/perfscale/perfscale/shop/nats"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "shop: %v\n", err)
		os.Exit(exitCode(err))
	}
}

// Exit codes, as loadlab's: 0 after --help or a clean shutdown.
const (
	exitFailed   = 1 // it could not start, or failed while it ran
	exitBadInput = 2 // a bad flag, value, argument or environment variable: nothing was started
)

// badInputError marks an error in what shop was given: exit 2.
type badInputError struct{ err error }

func (e *badInputError) Error() string { return e.err.Error() }
func (e *badInputError) Unwrap() error { return e.err }

// badInput marks err as bad input (--help's flag.ErrHelp is left as is).
func badInput(err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &badInputError{err}
}

// exitCode is the exit status for run's error.
func exitCode(err error) int {
	var bad *badInputError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &bad):
		return exitBadInput
	}
	return exitFailed
}

// logFlushEvery bounds how late a log line reaches stdout.
const logFlushEvery = 100 * time.Millisecond

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "reshard" {
		// Its own flags: it is an operator's one-off, not the service.
		logs := newBatchedLog(stdout, logFlushEvery)
		defer logs.Close()
		log, _ := newLogger("warn", logs)
		return runReshard(ctx, args[1:], stdout, log)
	}
	cfg, err := parseConfig(args, getenv, stdout)
	if err != nil {
		return badInput(err)
	}
	logs := newBatchedLog(stdout, logFlushEvery)
	defer logs.Close()
	log, err := newLogger(cfg.logLevel, logs)
	if err != nil {
		return badInput(err)
	}
	switch {
	case cfg.migrate:
		return migrate(ctx, cfg, log)
	case cfg.dropEvents:
		return dropEvents(ctx, cfg, log)
	}
	cfg.Logger, cfg.Drain = log, drain
	a, err := app.New(ctx, cfg.Config)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Serve(ctx)
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", level)
	}
	return slog.New(httpapi.RequestIDHandler{Handler: slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})}), nil
}

// migrate is `shop migrate`: the shop's and River's tables brought up to
// date, as a step of its own, so replicas starting together never race to
// migrate (on PostgreSQL they refuse to start on an old schema).
func migrate(ctx context.Context, cfg *config, log *slog.Logger) error {
	bc := backend.Config{DatabaseURL: cfg.DatabaseURL, ShardURLs: cfg.ShardURLs, Postgres: cfg.Postgres, Jobs: jobs.Config{Logger: log}}
	if cfg.DatabaseURL == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		bc.SQLitePath = filepath.Join(cfg.DataDir, "shop.db")
	}
	where, err := backend.Migrate(ctx, bc)
	if err != nil {
		return err
	}
	log.Info("migrated", "database", where)
	return nil
}

// dropEvents deletes the deployment's order events stream: tearing a
// deployment down that shared a NATS server with others (the local
// clusters do) gives back the storage the stream reserved.
func dropEvents(ctx context.Context, cfg *config, log *slog.Logger) error {
	if cfg.NATSURL == "" {
		return badInput(errors.New("drop-events needs --nats (or SHOP_NATS_URL)"))
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	deleted, err := shopnats.DeleteStream(ctx, cfg.NATSURL, cfg.NATSStream)
	if err != nil {
		return err
	}
	log.Info("order events stream", "stream", cfg.NATSStream, "deleted", deleted)
	return nil
}

// drain waits for the drain delay, or less if a second SIGINT or SIGTERM
// arrives: an operator who presses Ctrl-C twice means now.
func drain(delay time.Duration, log *slog.Logger) {
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	log.Info("draining", "delay", delay.String())
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case sig := <-again:
		log.Info("drain cut short", "signal", sig.String())
	}
}
