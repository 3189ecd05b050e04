package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Defaults and bounds.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultMaxInFlight = 1000
	// cappedFraction of requests waiting for an in-flight slot marks the
	// generator (or its --max-inflight) as the limit.
	cappedFraction = 0.01
	// cpuSaturated is the share of the generator's cores it may use before
	// it counts as saturated.
	cpuSaturated = 0.9
	// machineSaturated is the share of the whole machine's CPU above which
	// the generator may wait for a CPU, whatever its own load: a note.
	machineSaturated = 0.95
	// lateOfSLO and lateOfP99: sending late matters when the send delay's
	// p99 reaches this share of the SLO, or, without one, of the measured
	// p99. lateBusy: it is the generator's own doing when the generator
	// used this share of its cores meanwhile; below it, other work on the
	// machine delayed the sends.
	lateOfSLO    = 0.1
	lateOfP99    = 0.1
	lateBusy     = 0.5
	maxLatencyUS = int64(time.Hour / time.Microsecond)
	// pacerEarly is how far ahead of its time the pacer may send a request
	// instead of sleeping once more.
	pacerEarly = 50 * time.Microsecond
)

// Validate checks a configuration and explains what is wrong.
func (c *Config) Validate() error {
	if len(c.Stages) > 0 || c.StagedUsers {
		if err := c.validateStages(); err != nil {
			return err
		}
		staged := *c
		staged.Stages, staged.StagedUsers = nil, false
		staged.Duration = stagesDuration(c.Stages)
		if c.StagedUsers {
			staged.Concurrency = 1
		} else {
			staged.Rate = 1
		}
		return staged.Validate()
	}
	switch {
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return errors.New("rate must be a positive number of requests per second")
	case c.Concurrency < 0:
		return errors.New("concurrency must be a positive number of users")
	case c.Rate > 0 && c.Concurrency > 0:
		return errors.New("give either a rate (open loop) or a concurrency (closed loop), not both")
	case c.Rate == 0 && c.Concurrency == 0:
		return errors.New("give a rate (open loop, requests/s) or a concurrency (closed loop, users)")
	case c.Duration < 0 || c.Requests < 0:
		return errors.New("duration and requests must not be negative")
	case c.Duration == 0 && c.Requests == 0:
		return errors.New("give a duration or a number of requests, so the run ends")
	case c.Timeout < 0:
		return errors.New("timeout must not be negative")
	case c.ThinkTime < 0:
		return errors.New("think time must not be negative")
	case c.ThinkTime > 0 && c.Rate > 0:
		return errors.New("think time applies to closed loop only; in open loop the rate sets the pace")
	case (c.Target == nil) == (c.Scenario == nil):
		return errors.New("give exactly one of a target request and a scenario")
	case c.MaxInFlight < 0:
		return errors.New("max in-flight must not be negative")
	case c.Users != nil && (c.Scenario == nil || c.Concurrency > 0):
		return errors.New("a pool of users is for an open-loop run of a scenario (closed loop has a user for each of its concurrency)")
	}
	switch c.Client {
	case "", ClientFastHTTP, ClientNetHTTP:
	default:
		return fmt.Errorf("unknown client %q (want fasthttp or nethttp)", c.Client)
	}
	if c.Target != nil {
		if err := CheckURL(c.Target.URL); err != nil {
			return err
		}
		if !validMethod(c.Target.Method) {
			return fmt.Errorf("method %q is not an HTTP method", c.Target.Method)
		}
	}
	return nil
}

// validMethod accepts an HTTP token (RFC 9110), or "" for GET.
func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// CheckURL accepts only absolute http and https URLs with a host.
func CheckURL(raw string) error {
	if !strings.Contains(raw, "://") {
		return fmt.Errorf("URL %q must start with http:// or https://", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("cannot parse URL %q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL %q must start with http:// or https://", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("URL %q has no host", raw)
	}
	return nil
}

// Run generates the configured load until a bound is reached or ctx ends.
// When ctx ends early, Run returns what was measured so far.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	conns := cfg.Concurrency
	switch {
	case cfg.StagedUsers:
		for _, s := range cfg.Stages {
			conns = max(conns, int(s.Target))
		}
		cfg.Duration = stagesDuration(cfg.Stages)
	case len(cfg.Stages) > 0:
		conns = cfg.MaxInFlight
		cfg.Duration = stagesDuration(cfg.Stages)
	case cfg.Rate > 0:
		conns = cfg.MaxInFlight
	}
	var snd sender
	if cfg.Client == ClientNetHTTP {
		snd = newNetSender(conns, cfg.Timeout)
	} else {
		snd = newFastSender(conns, cfg.Timeout)
	}
	defer snd.close()

	g := &generator{cfg: cfg, snd: snd, rec: newRecorder(), sendDelay: hdrhistogram.New(0, maxLatencyUS, 2),
		endpoints: EndpointsOf(cfg), timeoutCause: "timeout after " + cfg.Timeout.String()}
	return g.run(ctx)
}

type generator struct {
	cfg Config
	snd sender
	rec *recorder
	// endpoints names the endpoints requests are recorded under.
	endpoints    []EndpointInfo
	timeoutCause string // "timeout after 30s"

	issued atomic.Int64 // requests started (for the Requests bound)
	due    atomic.Int64 // open loop: requests the schedule called for
	capped atomic.Int64 // open loop: requests queued with every in-flight slot busy
	// sendDelay: open loop, how late the pacer dispatched each request, µs
	// (written by the pacer alone, read after it ends).
	sendDelay *hdrhistogram.Histogram

	machineBusy0, machineTotal0 float64
	machineOK                   bool
	stop                        atomic.Bool // no more requests may start
}

// take reserves the right to start one more request.
func (g *generator) take() bool {
	if g.stop.Load() {
		return false
	}
	if g.cfg.Requests > 0 && g.issued.Add(1) > g.cfg.Requests {
		g.stop.Store(true)
		return false
	}
	return true
}

// stopAfter starts the timer that ends a duration-bounded run (a test
// makes it fire late, as a busy machine does).
var stopAfter = time.AfterFunc

func (g *generator) run(ctx context.Context) (*Result, error) {
	if wait := time.Until(g.cfg.StartAt); !g.cfg.StartAt.IsZero() && wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("cancelled before the agreed start: %w", context.Cause(ctx))
		}
	}
	start := time.Now()
	cpu0 := cpuTime()
	g.machineBusy0, g.machineTotal0, g.machineOK = MachineCPU()
	g.rec.start = start

	// The duration bound stops new requests; requests in flight at the
	// bound still finish and count (dropping them would hide exactly the
	// slow ones). Cancelling ctx abandons them. An open loop's schedule
	// ends at the duration by itself, and a pacer running behind it on a
	// busy machine still owes the requests due before the end: a
	// wall-clock stop dropped them (an agent of a three-agent run sent 197
	// of its 200 at a load average of 35), and with them the lateness
	// they would have recorded. It sends them within a grace past the end
	// (openLoopGrace); a generator further behind is saturated, and its
	// shortfall is reported as such.
	stopTimer := func() {}
	if g.cfg.Duration > 0 && !g.openModel() {
		t := stopAfter(g.cfg.Duration, func() { g.stop.Store(true) })
		stopTimer = func() { t.Stop() }
	}
	defer stopTimer()
	// (A goroutine waiting on ctx.Done() outlived every run whose
	// context never ends: one leaked per probe of a long search.)
	defer context.AfterFunc(ctx, func() { g.stop.Store(true) })()

	aggDone := make(chan struct{})
	aggStop := make(chan struct{})
	go g.aggregate(aggStop, aggDone, start, cpu0)

	switch {
	case g.cfg.StagedUsers:
		g.closedLoopStaged(ctx, start)
	case g.cfg.Rate > 0 || len(g.cfg.Stages) > 0:
		g.openLoop(ctx, start)
	default:
		g.closedLoop(ctx)
	}
	close(aggStop)
	<-aggDone
	elapsed := time.Since(start)
	res := g.result(elapsed, cpuTime()-cpu0)
	res.Start = start
	return res, nil
}

// openLoop sends requests at their scheduled times, whatever the target
// does. Each request's latency runs from its intended send time, so time
// spent waiting for a free worker (a stalled target) counts against the
// target, as in wrk2.
func (g *generator) openLoop(ctx context.Context, start time.Time) {
	schedule := g.schedule()
	// A buffered queue lets the pacer hand over requests without waiting
	// for a worker to wake. Workers count themselves idle while they wait
	// for a request; when a request falls due and no idle worker is left
	// for it, another worker starts at once (up to MaxInFlight), so no
	// request waits in the generator while it could be in flight. (Starting
	// one only after a request had been seen waiting made every request
	// of the ramp-up wait up to one interval, which showed as a tail that
	// was the generator's, not the target's.)
	jobs := make(chan time.Time, 4096)
	var wg sync.WaitGroup
	var idle atomic.Int64
	workers := 0
	worker := func() {
		defer wg.Done()
		w := g.newWorker()
		for {
			idle.Add(1)
			due, ok := <-jobs
			idle.Add(-1)
			if !ok {
				return
			}
			// A user who waits (a Retry-After) takes no request meanwhile:
			// it is not idle, so another worker takes the schedule's. A
			// pool's user goes back to the pool after its wait.
			w.borrow()
			waited := g.pause(ctx, w.sendAt(ctx, due))
			w.giveBack()
			if !waited {
				return
			}
		}
	}
	p := pacer{slack: 100 * time.Microsecond, early: pacerEarly, s: newSleeper()}
	defer p.s.close()
	for i := int64(0); ; i++ {
		offset, ok := schedule(i)
		// The schedule ends at the duration, whenever the stop timer
		// fires: on a busy machine it fired late and a 600-request run
		// sent 610.
		if !ok || (g.cfg.Duration > 0 && offset >= g.cfg.Duration) {
			break
		}
		due := start.Add(offset)
		if !p.until(ctx, due, &g.stop) {
			break
		}
		if g.cfg.Duration > 0 && time.Since(start) > g.cfg.Duration+openLoopGrace(g.cfg.Duration) {
			break
		}
		if !g.take() {
			break
		}
		g.due.Add(1)
		lateBy := time.Since(due)
		g.sendDelay.RecordValue(min(max(int64(lateBy/time.Microsecond), 0), maxLatencyUS)) //nolint:errcheck // clamped to range
		if idle.Load() <= int64(len(jobs)) {
			if workers < g.cfg.MaxInFlight {
				workers++
				wg.Add(1)
				go worker()
			} else {
				g.capped.Add(1)
			}
		}
		select {
		case jobs <- due:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
}

// openLoopGrace is how long past its duration an open loop that runs
// behind its schedule goes on sending the requests due before the end: a
// tenth of the duration, between 250 ms and 5 s.
func openLoopGrace(d time.Duration) time.Duration {
	return min(max(d/10, 250*time.Millisecond), 5*time.Second)
}

// openModel reports whether the run is open loop (a rate, or stages of
// rates).
func (g *generator) openModel() bool {
	return g.cfg.Rate > 0 || (len(g.cfg.Stages) > 0 && !g.cfg.StagedUsers)
}

// schedule returns when each request of the open loop is due, counted
// from the start: evenly at the rate, or following the stages' ramps.
func (g *generator) schedule() func(i int64) (time.Duration, bool) {
	if len(g.cfg.Stages) > 0 {
		r := &rampSchedule{stages: g.cfg.Stages}
		return r.offset
	}
	interval := time.Duration(float64(time.Second) / g.cfg.Rate)
	return func(i int64) (time.Duration, bool) { return time.Duration(i) * interval, true }
}

// pacer sleeps until scheduled times. Sleeps overshoot (by close to a
// millisecond through the Go runtime's timers on some virtual machines, by
// tens of microseconds through a timerfd; see sleeper), so it learns the
// overshoot and wakes that much early. It never spins: at rates above its
// resolution it sends the requests that fell due while it slept in one go,
// each at most one overshoot late.
type pacer struct {
	slack time.Duration // expected oversleep
	// early: a request due this soon goes out now rather than after one
	// more sleep (at high rates, fewer sleeps and so less CPU). Its latency
	// then counts from when it was really sent (see sendAt), so sending
	// early never flatters the target.
	early time.Duration
	s     *sleeper
}

// until waits for t unless the run stops first; it reports whether to go on.
func (p *pacer) until(ctx context.Context, t time.Time, stop *atomic.Bool) bool {
	for {
		if stop.Load() || ctx.Err() != nil {
			return false
		}
		d := time.Until(t)
		if d <= p.early {
			return true
		}
		want := min(d, 100*time.Millisecond)
		if want > p.slack+20*time.Microsecond {
			want -= p.slack
		}
		before := time.Now()
		p.s.sleep(want)
		over := time.Since(before) - want
		// An exponential average adapts to the machine within a few
		// sleeps and forgets the odd descheduling.
		p.slack = max(0, p.slack+(over-p.slack)/8)
	}
}

// closedLoop runs Concurrency users, each sending its next request when
// the previous answer arrived (plus think time).
func (g *generator) closedLoop(ctx context.Context) {
	var wg sync.WaitGroup
	for range g.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := g.newWorker()
			for g.take() {
				if !w.sendAndThink(ctx) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// worker sends requests with its own buffer and, for scenarios, its own
// simulated user.
type worker struct {
	g       *generator
	shard   *shard
	session Session
	buf     []byte
}

var shardCounter atomic.Uint64

func (g *generator) newWorker() *worker {
	w := &worker{g: g, shard: g.rec.shards[shardCounter.Add(1)%uint64(len(g.rec.shards))]}
	if g.cfg.Scenario != nil && g.cfg.Users == nil {
		w.session = g.cfg.Scenario.NewSession()
	}
	return w
}

// borrow takes the worker's user for its next request from the pool, if
// the run has one (Config.Users).
func (w *worker) borrow() {
	if u := w.g.cfg.Users; u != nil {
		w.session = u.take(w.g.cfg.Scenario)
	}
}

// giveBack returns the borrowed user to the pool.
func (w *worker) giveBack() {
	if u := w.g.cfg.Users; u != nil && w.session != nil {
		u.put(w.session)
		w.session = nil
	}
}

// sendAt sends one request intended to go out at due and records its
// latency from due, or from when it really went out if that was earlier
// (the pacer may send a request a few microseconds ahead of its time).
// It returns how long the user then waits (its session's wish).
func (w *worker) sendAt(ctx context.Context, due time.Time) (wait time.Duration) {
	// The stage is the one the request was scheduled in: the pacer may
	// send a request a little early, which moves the start of its latency
	// but must not move it into the stage before.
	stage := w.g.stageOf(due)
	if now := time.Now(); now.Before(due) {
		due = now
	}
	req := w.g.cfg.Target
	if w.session != nil {
		r, err := w.session.Next()
		if err != nil {
			// A scenario that cannot build its request returns it with
			// its endpoint set, so the failure counts where it belongs.
			ep := 0
			if r != nil {
				ep = r.Endpoint
			}
			w.shard.record(0, outcome{kind: buildFailed, err: err}, ep, stage, nil, w.g.timeoutCause)
			return 0
		}
		req = r
	}
	out, buf := w.g.snd.send(ctx, req, w.session != nil, w.buf)
	w.buf = buf
	lat := time.Since(due)
	if out.kind == aborted {
		return 0
	}
	if w.session != nil {
		wait = w.session.Observe(req, Response{Status: out.status, Body: buf, RetryAfter: out.retryAfter})
	}
	if w.g.cfg.Sample != nil && lat > 0 {
		w.g.cfg.Sample(req.Endpoint, lat, out.kind == okKind)
	}
	w.shard.record(lat, out, req.Endpoint, stage, buf, w.g.timeoutCause)
	return wait
}

// pause waits d for a user (Config.Pause, or a timer); false when the
// run was cancelled meanwhile.
func (g *generator) pause(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	if g.cfg.Pause != nil {
		return g.cfg.Pause(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// sendAndThink sends the next request of a closed-loop user now, then
// waits the think time; false when the run was cancelled meanwhile.
func (w *worker) sendAndThink(ctx context.Context) bool {
	if wait := w.sendAt(ctx, time.Now()); !w.g.pause(ctx, wait) {
		return false
	}
	if w.g.cfg.ThinkTime <= 0 {
		return true
	}
	select {
	case <-time.After(w.g.cfg.ThinkTime):
		return true
	case <-ctx.Done():
		return false
	}
}

// stageOf is the stage a request due at t belongs to, or -1 in a run
// without stages.
func (g *generator) stageOf(t time.Time) int {
	if len(g.cfg.Stages) == 0 {
		return -1
	}
	return stageAt(g.cfg.Stages, t.Sub(g.rec.start))
}

// --- recording ---

// recorder spreads recording over shards so that workers on different
// cores rarely share a lock; an aggregator drains them once a second.
type recorder struct {
	start  time.Time
	shards []*shard
	mu     sync.Mutex // guards the fields below (aggregator and result)
	total  *hdrhistogram.Histogram
	ok     *hdrhistogram.Histogram // successful answers only
	errs   ErrorCounts
	count  int64
	series []Second
	snap   Snapshot
}

type shard struct {
	mu     sync.Mutex
	hist   *hdrhistogram.Histogram // this interval's latencies, µs
	ok     *hdrhistogram.Histogram // the successful answers among them
	count  int64
	errs   ErrorCounts
	eps    []*endpointStats // the whole run's, by endpoint; created when first used
	stages []*endpointStats // the same by stage, in a staged run
	_      [64]byte         // keep shards on separate cache lines
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, maxLatencyUS, 3) }

func newRecorder() *recorder {
	r := &recorder{total: newHist(), ok: newHist()}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	for range n {
		r.shards = append(r.shards, &shard{hist: newHist(), ok: newHist()})
	}
	return r
}

// record counts one request of endpoint ep; body is the answer's body,
// read only when the request failed.
func (s *shard) record(lat time.Duration, out outcome, ep, stage int, body []byte, timeoutCause string) {
	us := min(max(int64(lat/time.Microsecond), 1), maxLatencyUS)
	s.mu.Lock()
	for len(s.eps) <= ep {
		s.eps = append(s.eps, nil)
	}
	e := s.eps[ep]
	if e == nil {
		e = newEndpointStats()
		e.ok = newHist()
		s.eps[ep] = e
	}
	s.count++
	e.count++
	if stage >= 0 {
		s.recordStage(stage, us, lat > 0, out.kind)
	}
	if out.kind != okKind {
		countKind(&s.errs, out.kind)
		countKind(&e.errs, out.kind)
		e.addCause(out, body, timeoutCause)
	}
	// Every completed request's latency is recorded, failed ones too: a
	// timeout is the slowest answer of all.
	if lat > 0 {
		s.hist.RecordValue(us) //nolint:errcheck // clamped to range
		e.hist.RecordValue(us) //nolint:errcheck // clamped to range
		if out.kind == okKind {
			s.ok.RecordValue(us) //nolint:errcheck // clamped to range
			e.ok.RecordValue(us) //nolint:errcheck // clamped to range
		}
	}
	s.mu.Unlock()
}

// recordStage counts a request in its stage (s.mu held).
func (s *shard) recordStage(stage int, us int64, timed bool, kind errorKind) {
	for len(s.stages) <= stage {
		s.stages = append(s.stages, nil)
	}
	st := s.stages[stage]
	if st == nil {
		st = newEndpointStats()
		s.stages[stage] = st
	}
	st.count++
	countKind(&st.errs, kind)
	if timed {
		st.hist.RecordValue(us) //nolint:errcheck // clamped to range
	}
}

func countKind(c *ErrorCounts, k errorKind) {
	switch k {
	case status4xx:
		c.Status4xx++
	case status5xx:
		c.Status5xx++
	case timeoutKind:
		c.Timeout++
	case connectionKind:
		c.Connection++
	case otherKind, buildFailed:
		c.Other++
	}
}

// drain moves the shards' interval data into one interval histogram.
// The successful answers go straight into the run's total: no per-second
// figure needs them.
func (r *recorder) drain(interval *hdrhistogram.Histogram) (count int64, errs ErrorCounts) {
	for _, s := range r.shards {
		s.mu.Lock()
		interval.Merge(s.hist)
		s.hist.Reset()
		r.mu.Lock()
		r.ok.Merge(s.ok)
		r.mu.Unlock()
		s.ok.Reset()
		count += s.count
		s.count = 0
		e := s.errs
		s.errs = ErrorCounts{}
		s.mu.Unlock()
		errs.Status4xx += e.Status4xx
		errs.Status5xx += e.Status5xx
		errs.Timeout += e.Timeout
		errs.Connection += e.Connection
		errs.Other += e.Other
	}
	return count, errs
}

func addErrs(a *ErrorCounts, b ErrorCounts) {
	a.Status4xx += b.Status4xx
	a.Status5xx += b.Status5xx
	a.Timeout += b.Timeout
	a.Connection += b.Connection
	a.Other += b.Other
}

// aggregate drains the shards once a second into the per-second series,
// the running totals and the progress snapshot.
func (g *generator) aggregate(stop <-chan struct{}, done chan<- struct{}, start time.Time, cpu0 time.Duration) {
	defer close(done)
	r := g.rec
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	interval := newHist()
	lastCPU, lastAt := cpu0, start
	flush := func(final bool) {
		interval.Reset()
		count, errs := r.drain(interval)
		now := time.Now()
		r.mu.Lock()
		r.total.Merge(interval)
		r.count += count
		addErrs(&r.errs, errs)
		var sec *Second
		if count > 0 || !final {
			sec = &Second{
				At:       len(r.series) + 1,
				Requests: count,
				Errors:   errs.Total(),
				P50:      time.Duration(interval.ValueAtQuantile(50)) * time.Microsecond,
				P99:      time.Duration(interval.ValueAtQuantile(99)) * time.Microsecond,
			}
			r.series = append(r.series, *sec)
		}
		cpu, span := cpuTime(), now.Sub(lastAt)
		busy := float64(cpu-lastCPU) / float64(span) / float64(runtime.GOMAXPROCS(0))
		lastCPU, lastAt = cpu, now
		r.snap = Snapshot{
			Elapsed:   now.Sub(start),
			Requests:  r.count,
			Errors:    r.errs.Total(),
			RateRPS:   float64(count) / span.Seconds(),
			P99:       time.Duration(r.total.ValueAtQuantile(99)) * time.Microsecond,
			Saturated: busy > cpuSaturated,
		}
		snap := r.snap
		r.mu.Unlock()
		if sec != nil && g.cfg.Interval != nil {
			g.cfg.Interval(*sec, interval)
		}
		if g.cfg.Progress != nil && !final {
			g.cfg.Progress(snap)
		}
	}
	for {
		select {
		case <-tick.C:
			flush(false)
		case <-stop:
			flush(true)
			return
		}
	}
}

// latencyOf summarises a histogram of microseconds (zero when empty).
func latencyOf(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	q := func(p float64) time.Duration { return time.Duration(h.ValueAtQuantile(p)) * time.Microsecond }
	return Latency{
		Min: time.Duration(h.Min()) * time.Microsecond, Mean: time.Duration(h.Mean() * float64(time.Microsecond)),
		P50: q(50), P90: q(90), P99: q(99), P999: q(99.9), Max: time.Duration(h.Max()) * time.Microsecond,
	}
}

func (g *generator) result(elapsed, cpu time.Duration) *Result {
	r := g.rec
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &Result{
		Elapsed:   elapsed,
		Requests:  r.count,
		Errors:    r.errs,
		Series:    r.series,
		Histogram: r.total,
	}
	if g.openModel() {
		res.Model, res.Rate = "open", g.cfg.Rate
		res.SendDelayP99 = time.Duration(g.sendDelay.ValueAtQuantile(99)) * time.Microsecond
		res.Sent = g.due.Load()
	} else {
		res.Model, res.Concurrency = "closed", g.cfg.Concurrency
	}
	if elapsed > 0 {
		res.ThroughputRPS = float64(r.count) / elapsed.Seconds()
		res.GeneratorCPUCores = cpu.Seconds() / elapsed.Seconds()
	}
	res.Latency = latencyOf(r.total)
	res.Succeeded = r.count - r.errs.Total()
	res.SuccessLatency = latencyOf(r.ok)
	res.SuccessHistogram = r.ok
	if elapsed > 0 {
		res.GoodputRPS = float64(res.Succeeded) / elapsed.Seconds()
	}
	res.Endpoints = g.endpointResults()
	res.Stages = g.stageResults()
	g.checkSelf(res, cpu)
	return res
}

// checkSelf asks whether the generator, not the target, limited the run or
// distorted its figures, and says so once with the figures: its CPU was
// saturated; in open loop, it sent fewer requests than the rate called
// for, requests waited for an in-flight slot, or requests went out late
// by enough to matter. Lateness matters when it could move the latency
// p99 against the SLO (a tenth of it, or across it) or, without an SLO,
// when it could be a tenth of the p99 of the successful answers; it is the
// generator's fault when the generator was busy, and a note on the
// machine's load when it was not (other work delayed the sends).
func (g *generator) checkSelf(res *Result, cpu time.Duration) {
	cores := float64(runtime.GOMAXPROCS(0))
	cpuShare := 0.0
	if res.Elapsed > 0 {
		cpuShare = cpu.Seconds() / res.Elapsed.Seconds() / cores
	}
	if cpuShare > cpuSaturated {
		res.SaturationReasons = append(res.SaturationReasons,
			fmt.Sprintf("the generator's CPU was %.0f%% busy (%.2f of %d cores): it may have limited the load", 100*cpuShare, res.GeneratorCPUCores, int(cores)))
	}
	if due := g.due.Load(); due > 0 && float64(g.capped.Load())/float64(due) > cappedFraction {
		res.SaturationReasons = append(res.SaturationReasons,
			fmt.Sprintf("all %d in-flight slots were busy for %.1f%% of requests, which waited in the generator (their wait counts in the latency); raise --max-inflight if the target can take more",
				g.cfg.MaxInFlight, 100*float64(g.capped.Load())/float64(due)))
	}
	if g.openModel() && res.Elapsed > 0 && g.cfg.Requests == 0 {
		want := g.cfg.Rate * min(res.Elapsed, g.cfg.Duration).Seconds()
		if len(g.cfg.Stages) > 0 {
			want = stagesDue(g.cfg.Stages, min(res.Elapsed, g.cfg.Duration))
		}
		if sent := float64(g.due.Load()); sent < 0.95*want {
			res.SaturationReasons = append(res.SaturationReasons,
				fmt.Sprintf("sent %.0f requests, %.0f%% of the %.0f the rate called for", sent, 100*sent/want, want))
		}
	}
	machine := math.NaN()
	if busy, total, ok := MachineCPU(); ok && g.machineOK && total > g.machineTotal0 {
		machine = (busy - g.machineBusy0) / (total - g.machineTotal0)
	}
	late := g.lateness(res)
	switch {
	case late != "" && cpuShare >= lateBusy:
		res.SaturationReasons = append(res.SaturationReasons,
			fmt.Sprintf("%s, with the generator's CPU %.0f%% busy (%.2f of %d cores): it could not keep its schedule", late, 100*cpuShare, res.GeneratorCPUCores, int(cores)))
	case late != "":
		on := ""
		if !math.IsNaN(machine) {
			on = fmt.Sprintf(" on a machine %.0f%% busy", 100*machine)
		}
		res.Notes = append(res.Notes,
			fmt.Sprintf("%s, while the generator used only %.2f of %d cores%s: other work on the machine delayed the sends, and the latency partly measures that", late, res.GeneratorCPUCores, int(cores), on))
	case machine > machineSaturated:
		res.Notes = append(res.Notes,
			fmt.Sprintf("the machine's CPUs were %.0f%% busy while the generator used %.2f of %d cores: latencies may include time it waited for a CPU", 100*machine, res.GeneratorCPUCores, int(cores)))
	}
	sort.Strings(res.SaturationReasons)
	res.GeneratorSaturated = len(res.SaturationReasons) > 0
}

// lateness describes, when it matters, how late requests went out in open
// loop ("" when it does not). The send delay's p99 is the most sending
// late can have added to the latency p99.
func (g *generator) lateness(res *Result) string {
	delay, p99 := res.SendDelayP99, res.SuccessLatency.P99
	if !g.openModel() || delay <= 0 || res.Succeeded == 0 {
		return ""
	}
	figures := fmt.Sprintf("requests went out up to %v late (p99), and that is in the p99 of the successful answers, %v", delay.Round(10*time.Microsecond), p99.Round(10*time.Microsecond))
	if slo := g.cfg.SLO; slo > 0 {
		switch {
		case p99 > slo && p99-delay <= slo:
			return fmt.Sprintf("%s: without it the p99 might meet the %v SLO", figures, slo)
		case float64(delay) >= lateOfSLO*float64(slo):
			return fmt.Sprintf("%s, %.0f%% of the %v SLO", figures, 100*float64(delay)/float64(slo), slo)
		}
		return ""
	}
	if float64(delay) >= lateOfP99*float64(p99) {
		return fmt.Sprintf("%s: up to %.0f%% of it may be the sending late", figures, 100*min(float64(delay)/float64(p99), 1))
	}
	return ""
}

// LatencyOf summarises a histogram of microseconds, as a run's results
// do (zero when empty or nil).
func LatencyOf(h *hdrhistogram.Histogram) Latency {
	if h == nil {
		return Latency{}
	}
	return latencyOf(h)
}
