package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	shopnats "github.com/perfscale/perfscale/shop/nats"
)

// Serve starts serving (the API, the admin listener, the job workers, the
// events relay) and runs until ctx ends; then it fails readiness for the
// drain delay while still serving, so a load balancer stops routing here,
// and shuts down within the shutdown timeout: the listeners, then the jobs,
// then the relay. Close the App afterwards.
func (a *App) Serve(ctx context.Context) error {
	stopRelay, err := a.start(ctx)
	if err != nil {
		return err
	}
	<-ctx.Done()
	a.draining.Store(true)
	a.drain()
	a.log.Info("shutting down", "timeout", a.cfg.ShutdownTimeout.String())
	stopCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	errs := []error{a.api.Close(stopCtx)}
	if a.admin != nil {
		errs = append(errs, a.admin.Close(stopCtx))
	}
	errs = append(errs, a.backend.Queue.Stop(stopCtx))
	// The relay stops after the jobs: it publishes what they changed, and
	// what it leaves, the next start publishes.
	stopRelay()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	a.log.Info("stopped")
	return nil
}

// start opens the listeners, starts the workers and the relay; stopRelay
// stops the relay and waits for it.
func (a *App) start(ctx context.Context) (stopRelay func(), err error) {
	if err := a.api.Open(); err != nil {
		return nil, err
	}
	a.log.Info("listening", "url", a.api.URL(), "replica", a.replica, "role", a.cfg.Role, "database", a.backend.Where, "admin_api", a.cfg.AdminToken != "")
	if a.admin != nil {
		if err := a.admin.Open(); err != nil {
			return nil, err
		}
		a.log.Info("admin listening", "url", a.admin.URL())
	}
	if err := a.backend.Queue.Start(ctx); err != nil {
		return nil, err
	}
	if a.events == nil || !a.works() {
		return func() {}, nil
	}
	relayCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	// On PostgreSQL the relay runs when this process's jobs find order
	// events committed (openQueue) and polls only as a safety net; on
	// SQLite it polls.
	relay := shopnats.NewRelay(a.store, a.events, shopnats.RelayConfig{
		Wake:       a.relayWake, // nil on SQLite
		Registerer: a.reg, Logger: a.log.With("component", "relay")})
	// The stream's state as the NATS server holds it, from the process
	// that fills it: one series per stream however many replicas run.
	if a.bus != nil {
		a.reg.MustRegister(a.bus.StreamCollector())
	}
	done := make(chan struct{})
	go func() { defer close(done); relay.Run(relayCtx) }() //nolint:errcheck // returns nil
	return func() { cancel(); <-done }, nil
}

// drain waits out the drain delay.
func (a *App) drain() {
	if a.cfg.DrainDelay <= 0 {
		return
	}
	if a.cfg.Drain != nil {
		a.cfg.Drain(a.cfg.DrainDelay, a.log)
		return
	}
	a.log.Info("draining", "delay", a.cfg.DrainDelay.String())
	time.Sleep(a.cfg.DrainDelay)
}

// tryLock takes an exclusive advisory lock on path without waiting; ok is
// false when another process holds it.
func tryLock(path string) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("worker lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return func() {}, false, nil
		}
		return nil, false, fmt.Errorf("worker lock %s: %w", path, err)
	}
	return func() { f.Close() }, true, nil
}

// listenerName is the default replica name: the API's host:port, with the
// machine's host name when the listener is on every interface.
func listenerName(addr string, port int) string {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// adminMux serves profiling and metrics on a listener of its own, so they
// are never exposed on the public address.
func adminMux(reg prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}
