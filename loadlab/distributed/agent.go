package distributed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/perfscale/perfscale/loadlab/load"
)

// Agent limits.
const (
	// maxSpec bounds a spec's body (a scenario or a request body).
	maxSpec = 16 << 20
	// preparedFor is how long a prepared run waits for its start.
	preparedFor = time.Minute
	// heartbeat is how often a running agent says it is alive.
	heartbeat = 500 * time.Millisecond
)

// Agent runs one load run at a time for a coordinator.
type Agent struct {
	// Log, if set, receives one line per run.
	Log *slog.Logger
	// Sample, if set, is passed to every run's load.Config (see there).
	Sample func(endpoint int, latency time.Duration, succeeded bool)
	// RunEnded, if set, is called after each started run ends, with nil
	// when it sent its result, or why not (after its last line was written).
	RunEnded func(error)

	mu      sync.Mutex
	pending *pendingRun // prepared, or running
	// heartbeat is how often a run sends progress (0: heartbeat); the
	// tests shorten it.
	heartbeat time.Duration
}

func (a *Agent) heartbeatEvery() time.Duration {
	if a.heartbeat > 0 {
		return a.heartbeat
	}
	return heartbeat
}

type pendingRun struct {
	id      string
	cfg     load.Config
	started bool
	expiry  *time.Timer
}

// Handler serves the agent's HTTP interface.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/runs", a.handlePrepare)
	mux.HandleFunc("POST /v1/runs/{id}/start", a.handleStart)
	mux.HandleFunc("DELETE /v1/runs/{id}", a.handleForget)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }) //nolint:errcheck // best effort
	return mux
}

// problem writes an RFC 9457 problem document.
func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{ //nolint:errcheck // the client may be gone
		"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail,
	})
}

func (a *Agent) logger() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (a *Agent) handlePrepare(w http.ResponseWriter, r *http.Request) {
	var spec Spec
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSpec))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		problem(w, http.StatusBadRequest, "the run's spec is not valid JSON: "+err.Error())
		return
	}
	cfg, err := spec.Config()
	if err != nil {
		problem(w, http.StatusBadRequest, err.Error())
		return
	}
	cfg.Sample = a.Sample
	var idb [8]byte
	rand.Read(idb[:]) //nolint:errcheck // never fails
	id := hex.EncodeToString(idb[:])
	a.mu.Lock()
	if a.pending != nil {
		a.mu.Unlock()
		problem(w, http.StatusConflict, "this agent is busy with another run")
		return
	}
	p := &pendingRun{id: id, cfg: cfg}
	p.expiry = time.AfterFunc(preparedFor, func() { a.forget(id, false) })
	a.pending = p
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(prepared{ID: id, AgentTime: time.Now()}) //nolint:errcheck // the coordinator may be gone
}

// forget drops the run id unless it started (or, with running, only if
// it did).
func (a *Agent) forget(id string, running bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pending == nil || a.pending.id != id || a.pending.started != running {
		return false
	}
	a.pending.expiry.Stop()
	a.pending = nil
	return true
}

func (a *Agent) handleForget(w http.ResponseWriter, r *http.Request) {
	if !a.forget(r.PathValue("id"), false) {
		problem(w, http.StatusNotFound, "no prepared run with this id")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// take marks the prepared run id as started and returns its config.
func (a *Agent) take(id string) (load.Config, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pending
	if p == nil || p.id != id || p.started {
		return load.Config{}, false
	}
	p.started = true
	p.expiry.Stop()
	return p.cfg, true
}

func (a *Agent) handleStart(w http.ResponseWriter, r *http.Request) {
	var req startRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req); err != nil || req.StartAt.IsZero() {
		problem(w, http.StatusBadRequest, "want {\"start_at\": TIME}")
		return
	}
	id := r.PathValue("id")
	cfg, ok := a.take(id)
	if !ok {
		problem(w, http.StatusNotFound, "no prepared run with this id (it expired, or started already)")
		return
	}
	var runErr error
	defer func() {
		a.forget(id, true)
		if a.RunEnded != nil {
			a.RunEnded(runErr)
		}
	}()
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush() // the coordinator knows at once that the run is on
	}
	var wmu sync.Mutex
	enc := json.NewEncoder(w)
	send := func(e event) error {
		wmu.Lock()
		defer wmu.Unlock()
		if err := enc.Encode(e); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	log := a.logger().With("run", id)
	log.Info("run starting", "start_at", req.StartAt, "rate", cfg.Rate, "users", cfg.Concurrency)
	res, seconds, err := a.run(r.Context(), cfg, req.StartAt, send)
	var packed *agentResult
	if err == nil {
		packed, err = pack(res, seconds)
	}
	if err != nil {
		log.Warn("run failed", "err", err)
		runErr = err
		send(event{Event: eventError, Error: err.Error()}) //nolint:errcheck // the coordinator may be gone
		return
	}
	log.Info("run done", "requests", res.Requests, "saturated", res.GeneratorSaturated)
	if err := send(event{Event: eventResult, Result: packed}); err != nil {
		runErr = fmt.Errorf("the result could not be sent: %w", err)
	}
}

// run runs cfg from startAt, sending progress meanwhile; ctx ends when
// the coordinator goes away.
func (a *Agent) run(ctx context.Context, cfg load.Config, startAt time.Time, send func(event) error) (*load.Result, []string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var snap atomic.Pointer[load.Snapshot]
	snap.Store(&load.Snapshot{})
	cfg.Progress = func(s load.Snapshot) { snap.Store(&s) }
	cfg.StartAt = startAt
	var seconds []string
	var encodeErr error
	cfg.Interval = func(_ load.Second, h *hdrhistogram.Histogram) {
		b, err := encode(h)
		if err != nil && encodeErr == nil {
			encodeErr = err
		}
		seconds = append(seconds, b)
	}
	done := make(chan struct{})
	// The heartbeats end before run returns: a progress line written
	// after the handler has returned writes to a finished response (the
	// agent process crashed with a nil pointer in Flush when a tick came
	// as the run ended).
	var beating sync.WaitGroup
	beating.Go(func() {
		t := time.NewTicker(a.heartbeatEvery())
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if send(event{Event: eventProgress, Progress: snap.Load()}) != nil {
					cancel() // the coordinator is gone: stop loading its target
					return
				}
			}
		}
	})
	res, err := load.Run(ctx, cfg)
	close(done)
	beating.Wait()
	switch {
	case err != nil:
		return nil, nil, err
	case ctx.Err() != nil:
		return nil, nil, errors.New("the coordinator went away: the run was stopped")
	case encodeErr != nil:
		return nil, nil, encodeErr
	case len(seconds) != len(res.Series):
		return nil, nil, fmt.Errorf("%d seconds in the series, %d histograms", len(res.Series), len(seconds))
	}
	return res, seconds, nil
}
