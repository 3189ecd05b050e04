package distributed

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/perfscale/perfscale/loadlab/load"
)

// Coordinator defaults.
const (
	// DefaultSilence is how long an agent may send nothing mid-run before
	// the run fails (it sends progress twice a second).
	DefaultSilence = 10 * time.Second
	prepareTimeout = 10 * time.Second
	// minLead is the least time between choosing the start instant and
	// the instant itself; the slowest prepare round trip adds to it.
	minLead = 300 * time.Millisecond
)

// Coordinator runs a Spec on agents and merges their results.
type Coordinator struct {
	// Agents are the agents' addresses (host:port, or http:// URLs).
	Agents []string
	// Silence is how long an agent may send nothing mid-run (0: DefaultSilence).
	Silence time.Duration
	// Client talks to the agents (nil: a client without overall timeout).
	Client *http.Client
	// Progress, if set, gets the agents' summed progress.
	Progress func(load.Snapshot)
	// WaitReady, if positive, is how long to wait for agents that do not
	// answer yet (starting pods, say) before the run fails.
	WaitReady time.Duration
}

// AgentError says which agent failed a run and why, in one line.
type AgentError struct {
	Agent string // "agent 2 (127.0.0.1:7071)"
	// During is "before the start" or "mid-run after 1.4s".
	During string
	Err    error
}

func (e *AgentError) Error() string {
	return fmt.Sprintf("%s failed %s: %v", e.Agent, e.During, e.Err)
}

func (e *AgentError) Unwrap() error { return e.Err }

// BadSpecError is an agent refusing the run as given (HTTP 400): the
// user's input, not the agent, is at fault.
type BadSpecError struct{ Detail string }

func (e *BadSpecError) Error() string { return e.Detail }

type agentConn struct {
	name, base string
	part       Part
	id         string
	offset     time.Duration // agent clock - coordinator clock
	rtt        time.Duration
	last       load.Snapshot
}

// Run prepares the run on every agent, starts them at one instant and
// returns the merged result. Any agent failing fails the run (the others
// are stopped); ctx ending stops every agent and returns its error.
func (c *Coordinator) Run(ctx context.Context, spec Spec) (*load.Result, error) {
	if len(c.Agents) == 0 {
		return nil, errors.New("no agents given")
	}
	parts, err := Split(spec, len(c.Agents))
	if err != nil {
		return nil, err
	}
	conns := make([]*agentConn, len(c.Agents))
	for i, addr := range c.Agents {
		base := addr
		if !strings.Contains(base, "://") {
			base = "http://" + base
		}
		conns[i] = &agentConn{name: fmt.Sprintf("agent %d (%s)", i+1, addr), base: strings.TrimRight(base, "/"), part: parts[i]}
	}
	if c.WaitReady > 0 {
		if err := c.waitReady(ctx, conns); err != nil {
			return nil, err
		}
	}
	if err := c.prepareAll(ctx, conns); err != nil {
		return nil, err
	}
	lead := minLead
	for _, a := range conns {
		lead = max(lead, minLead+2*a.rtt)
	}
	startAt := time.Now().Add(lead)
	results, err := c.startAll(ctx, conns, startAt)
	if err != nil {
		return nil, err
	}
	return merge(conns, results, startAt, spec)
}

func (c *Coordinator) client() *http.Client {
	if c.Client != nil {
		return c.Client
	}
	return &http.Client{}
}

// waitReady waits until every agent answers its health check, for at
// most WaitReady in all.
func (c *Coordinator) waitReady(ctx context.Context, conns []*agentConn) error {
	ctx, cancel := context.WithTimeout(ctx, c.WaitReady)
	defer cancel()
	for _, a := range conns {
		var last error
		for {
			last = c.healthy(ctx, a)
			if last == nil {
				break
			}
			select {
			case <-ctx.Done():
				return &AgentError{Agent: a.name, During: "before the start", Err: fmt.Errorf("not ready after %v: %w", c.WaitReady, last)}
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}

func (c *Coordinator) healthy(ctx context.Context, a *agentConn) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return unwrapURL(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health check answered %s", resp.Status)
	}
	return nil
}

// prepareAll sends every agent its part; on any failure it forgets the
// runs already prepared and names the agent that failed.
func (c *Coordinator) prepareAll(ctx context.Context, conns []*agentConn) error {
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, a := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.prepare(ctx, a)
		}()
	}
	wg.Wait()
	first := errors.Join(errs...)
	if first == nil {
		return nil
	}
	for _, err := range errs {
		if err != nil {
			first = err
			break
		}
	}
	for i, a := range conns {
		if errs[i] == nil {
			c.forget(a)
		}
	}
	return first
}

func (c *Coordinator) prepare(ctx context.Context, a *agentConn) error {
	fail := func(err error) error { return &AgentError{Agent: a.name, During: "before the start", Err: err} }
	body, err := json.Marshal(a.part.Spec)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, prepareTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/v1/runs", bytes.NewReader(body))
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Content-Type", "application/json")
	sent := time.Now()
	resp, err := c.client().Do(req)
	if err != nil {
		return fail(fmt.Errorf("cannot reach it: %w", unwrapURL(err)))
	}
	defer resp.Body.Close()
	got := time.Now()
	if resp.StatusCode != http.StatusCreated {
		detail := problemDetail(resp)
		if resp.StatusCode == http.StatusBadRequest {
			return &BadSpecError{Detail: fmt.Sprintf("%s refused the run: %s", a.name, detail)}
		}
		return fail(fmt.Errorf("refused the run: %s", detail))
	}
	var p prepared
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || p.ID == "" {
		return fail(fmt.Errorf("answered the run without an id: %v", err))
	}
	a.id, a.rtt = p.ID, got.Sub(sent)
	a.offset = p.AgentTime.Sub(sent.Add(a.rtt / 2))
	return nil
}

// forget tells an agent to drop a prepared run (best effort).
func (c *Coordinator) forget(a *agentConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, a.base+"/v1/runs/"+a.id, nil)
	if err != nil {
		return
	}
	if resp, err := c.client().Do(req); err == nil {
		resp.Body.Close()
	}
}

type agentOutcome struct {
	res     *agentResult
	seconds []*hdrhistogram.Histogram
}

// startAll starts every agent at startAt (plus its phase) and waits for
// their results; the first agent to fail stops the others.
func (c *Coordinator) startAll(ctx context.Context, conns []*agentConn, startAt time.Time) ([]agentOutcome, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := make([]agentOutcome, len(conns))
	errs := make([]error, len(conns))
	progress := make(chan int, len(conns))
	var mu sync.Mutex // guards conns[*].last
	var wg sync.WaitGroup
	for i, a := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.follow(ctx, a, startAt.Add(a.part.Phase), func(s load.Snapshot) {
				mu.Lock()
				a.last = s
				mu.Unlock()
				select {
				case progress <- i:
				default:
				}
			})
			if err != nil {
				errs[i] = err
				cancel(err)
				return
			}
			out[i] = res
		}()
	}
	doneAll := make(chan struct{})
	go func() { wg.Wait(); close(doneAll) }()
	for waiting := true; waiting; {
		select {
		case <-doneAll:
			waiting = false
		case <-progress:
			if c.Progress != nil {
				mu.Lock()
				c.Progress(sumProgress(conns))
				mu.Unlock()
			}
		}
	}
	// The first failure is the cause; the others were stopped because of it.
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return nil, cause
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func sumProgress(conns []*agentConn) load.Snapshot {
	var s load.Snapshot
	for _, a := range conns {
		s.Elapsed = max(s.Elapsed, a.last.Elapsed)
		s.Requests += a.last.Requests
		s.Errors += a.last.Errors
		s.RateRPS += a.last.RateRPS
		s.P99 = max(s.P99, a.last.P99) // an upper bound until the merge
		s.Saturated = s.Saturated || a.last.Saturated
	}
	return s
}

// follow starts one agent and reads its stream to the result. Anything
// else (the stream ending early, an error event, silence) fails the run.
func (c *Coordinator) follow(ctx context.Context, a *agentConn, startAt time.Time, progress func(load.Snapshot)) (agentOutcome, error) {
	fail := func(err error) (agentOutcome, error) {
		during := "before the start"
		if since := time.Since(startAt); since > 0 {
			during = fmt.Sprintf("mid-run after %.1fs", since.Seconds())
		}
		return agentOutcome{}, &AgentError{Agent: a.name, During: during, Err: err}
	}
	body, _ := json.Marshal(startRequest{StartAt: startAt.Add(a.offset)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/v1/runs/"+a.id+"/start", bytes.NewReader(body))
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return agentOutcome{}, context.Cause(ctx)
		}
		return fail(fmt.Errorf("connection lost before it started (%w): the agent died or the network failed", unwrapURL(err)))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("refused to start: %s", problemDetail(resp)))
	}
	silence := c.Silence
	if silence <= 0 {
		silence = DefaultSilence
	}
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 256<<20)
		for sc.Scan() {
			select {
			case lines <- append([]byte(nil), sc.Bytes()...):
			case <-ctx.Done():
				return
			}
		}
		err := sc.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		readErr <- err
	}()
	quiet := time.NewTimer(silence)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return agentOutcome{}, context.Cause(ctx)
		case <-quiet.C:
			return fail(fmt.Errorf("sent nothing for %v (it sends progress twice a second)", silence))
		case err := <-readErr:
			if ctx.Err() != nil {
				return agentOutcome{}, context.Cause(ctx)
			}
			return fail(fmt.Errorf("connection lost before its result (%v): the agent died or the network failed", err))
		case line := <-lines:
			quiet.Reset(silence)
			var e event
			if err := json.Unmarshal(line, &e); err != nil {
				return fail(fmt.Errorf("sent something unreadable: %v", err))
			}
			switch e.Event {
			case eventProgress:
				if e.Progress != nil {
					progress(*e.Progress)
				}
			case eventError:
				return fail(errors.New(e.Error))
			case eventResult:
				if e.Result == nil {
					return fail(errors.New("sent an empty result"))
				}
				seconds, err := e.Result.unpack()
				if err != nil {
					return fail(err)
				}
				// The result's start is in the agent's clock.
				e.Result.Result.Start = e.Result.Result.Start.Add(-a.offset)
				return agentOutcome{res: e.Result, seconds: seconds}, nil
			}
		}
	}
}

// problemDetail is the one line an agent's refusal says.
func problemDetail(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var p struct {
		Detail string `json:"detail"`
	}
	if json.Unmarshal(b, &p) == nil && p.Detail != "" {
		return p.Detail
	}
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		s = resp.Status
	}
	return s
}

// unwrapURL drops net/http's "Post \"URL\": " prefix: the agent's name
// already says where.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
