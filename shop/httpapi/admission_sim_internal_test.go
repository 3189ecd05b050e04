package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// These tests drive the admission middleware itself with a service whose
// time the test keeps: a fake clock that moves only when the test moves it,
// and a handler that holds every admitted request until the test's server
// model finishes it. Nothing depends on how fast the machine is: after
// every step the test waits until each request sent is in the handler,
// queued or answered.

// fakeClock is a clock that moves only by Advance. Its timers fire on the
// Advance that reaches them, one at a time (a timer of no time at all on
// the next Advance, which settle makes at once, by 0).
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at   time.Time
	ch   chan time.Time
	stop chan struct{}
	once sync.Once
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), ch: make(chan time.Time), stop: make(chan struct{})}
	c.timers = append(c.timers, t)
	return t.ch, func() { t.once.Do(func() { close(t.stop) }) }
}

// live is how many timers wait whose waiter has not stopped them.
func (c *fakeClock) live() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		select {
		case <-t.stop:
		default:
			n++
		}
	}
	return n
}

// due reports whether a timer's time has come.
func (c *fakeClock) due() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			return true
		}
	}
	return false
}

// Advance moves the clock by d and hands each timer it reaches its tick,
// one at a time, in the order they were made, calling react after each
// tick taken, with the number of timers before it: react returns once the
// waiter has done what the tick made it do. Ticks handed out together made their waiters race each other and
// the test's next step (a waiter leaving its queue while a slot was
// released to it), and the same run came out differently from one time
// to the next: TestOverloadOfTheReadsYieldsTheCPUToRefusedCheckouts
// failed about once in 20 runs.
func (c *fakeClock) Advance(d time.Duration, react func(timers int)) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	var due []*fakeTimer
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(now) {
			kept = append(kept, t)
			continue
		}
		due = append(due, t)
	}
	c.timers = kept
	c.mu.Unlock()
	for _, t := range due {
		// Counted before the tick: the waiter may wait on (a new
		// timer) before react looks.
		timers := c.timerCount()
		select {
		case t.ch <- now:
			react(timers)
		case <-t.stop:
		}
	}
}

// timerCount is how many timers wait for their time.
func (c *fakeClock) timerCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// simJob is one request through the middleware.
type simJob struct {
	spec    routeSpec
	user    int
	sent    time.Time
	release chan struct{}
}

type simResult struct {
	job     *simJob
	refused bool
}

type jobKey struct{}

// classTally counts a shed class's requests.
type classTally struct {
	sent, refused, served, withinObjective int
	responses                              []time.Duration // of the served
}

// sim is the middleware under test with its server model's state, all
// kept on the test's goroutine.
type sim struct {
	t        *testing.T
	clock    *fakeClock
	a        *admission
	handlers map[string]handlerFunc
	entered  chan *simJob
	results  chan simResult

	sent, answered int
	inService      []*simJob // in the handler, oldest first
	tally          [numShedClasses]classTally
	onAnswer       func(simResult) // a closed loop's next request
	// goodputFrom: answers within objective are counted in goodput only
	// from this time on.
	goodputFrom time.Time
	goodput     int
	maxQueued   int
	// writeService, when set, is a write's service in place of the one
	// the load is run with (the journey's writes cost several reads).
	writeService time.Duration
	// resendAtOnce: a closed loop's refused user sends again on the next
	// tick, not waiting for the CPU to run.
	resendAtOnce bool
	// database, when set, serves the writes apart from the CPU, one at a
	// time, writeService each, whenever it says it runs; dbWorked is the
	// oldest write's work so far.
	database func(elapsed time.Duration) bool
	dbWorked time.Duration
}

func newSim(t *testing.T, cfg AdmissionConfig) *sim {
	t.Helper()
	s := &sim{
		t:        t,
		clock:    newFakeClock(),
		a:        newAdmission(cfg, prometheus.NewRegistry()),
		handlers: map[string]handlerFunc{},
		entered:  make(chan *simJob, 4096),
		results:  make(chan simResult, 4096),
	}
	s.a.clock = s.clock
	s.goodputFrom = s.clock.Now()
	hold := func(w http.ResponseWriter, r *http.Request) error {
		j := r.Context().Value(jobKey{}).(*simJob)
		s.entered <- j
		<-j.release
		return nil
	}
	for _, sp := range routePlan {
		s.handlers[sp.pattern] = s.a.admit(sp, hold)
	}
	return s
}

// send starts a request to the route pattern for user.
func (s *sim) send(user int, pattern string) {
	sp := specOf(pattern)
	j := &simJob{spec: sp, user: user, sent: s.clock.Now(), release: make(chan struct{})}
	s.sent++
	s.tally[sp.shed].sent++
	h := s.handlers[pattern]
	method, _, _ := strings.Cut(pattern, " ")
	go func() {
		r := httptest.NewRequestWithContext(context.WithValue(context.Background(), jobKey{}, j), method, "/", nil)
		err := h(httptest.NewRecorder(), r)
		if err != nil && !errors.Is(err, errShed) {
			panic(err)
		}
		s.results <- simResult{job: j, refused: err != nil}
	}()
}

func (s *sim) queued() int {
	if s.a.split != nil {
		return s.a.split.reads.Stats().Queued + s.a.split.writes.Stats().Queued
	}
	return s.a.limiter.Queued()
}

// settle waits until every request sent is in the handler, queued or
// answered, and every timer due was taken and reacted to; answers are tallied
// (and a closed loop's users send their next request) on the way.
func (s *sim) settle() {
	s.t.Helper()
	guard := time.Now()
	for {
		select {
		case j := <-s.entered:
			s.inService = append(s.inService, j)
			continue
		case r := <-s.results:
			s.answered++
			s.record(r)
			if s.onAnswer != nil {
				s.onAnswer(r)
			}
			continue
		default:
		}
		q := s.queued()
		if s.clock.due() {
			s.advance(0)
			continue
		}
		// In split mode each queued request waits on one timer; one
		// that has not made it yet would make it after the next
		// Advance, its wait measured from a later time.
		timed := s.a.split == nil || s.clock.live() == q
		if s.sent-s.answered == len(s.inService)+q && timed {
			s.maxQueued = max(s.maxQueued, q)
			return
		}
		if time.Since(guard) > 2*time.Minute { // a hang guard, not a measure
			s.t.Fatalf("the requests did not settle: %d sent, %d answered, %d in service, %d queued", s.sent, s.answered, len(s.inService), q)
		}
		runtime.Gosched()
	}
}

// advance moves the clock by d, waiting for each waiter whose timer it
// reaches to react to its tick before the next (fakeClock.Advance).
func (s *sim) advance(d time.Duration) {
	s.clock.Advance(d, s.react)
}

// react waits until the waiter that just took a tick (with timers
// waiting before it) has done what it does with it, the only thing that runs meanwhile: wait on (a new timer),
// leave (its refusal answered) or, granted its slot as it left, enter the
// handler. A refusal's answer is tallied; a closed loop's user sends again
// only later (closedLoop), so no other request starts meanwhile.
func (s *sim) react(timers int) {
	s.t.Helper()
	guard := time.Now()
	for {
		select {
		case j := <-s.entered:
			s.inService = append(s.inService, j)
			return
		case r := <-s.results:
			s.answered++
			s.record(r)
			if s.onAnswer != nil {
				s.onAnswer(r)
			}
			return
		default:
		}
		if s.clock.timerCount() > timers {
			return
		}
		if time.Since(guard) > 2*time.Minute { // a hang guard, not a measure
			s.t.Fatal("a waiter did not react to its tick")
		}
		runtime.Gosched()
	}
}

func (s *sim) record(r simResult) {
	c := &s.tally[r.job.spec.shed]
	if r.refused {
		c.refused++
		return
	}
	took := s.clock.Now().Sub(r.job.sent)
	c.served++
	c.responses = append(c.responses, took)
	if took <= r.job.spec.objective {
		c.withinObjective++
		if !s.clock.Now().Before(s.goodputFrom) {
			s.goodput++
		}
	}
}

// finishOldest answers the request that has been in the handler longest.
func (s *sim) finishOldest() {
	j := s.inService[0]
	s.inService = s.inService[1:]
	close(j.release)
}

// journey is the built-in shop journey's mix, in the order a user goes
// through it (loadlab's shop scenario: mostly browsing, a cart change and
// a checkout every few pages).
var journey = []string{
	"POST /v1/sessions",
	"GET /v1/menu", "GET /v1/items", "GET /v1/menu", "GET /v1/items/{id}", "GET /v1/menu",
	"PUT /v1/cart/items/{id}", "GET /v1/menu", "GET /v1/items/{id}", "GET /v1/menu", "GET /v1/cart",
	"GET /v1/menu", "GET /v1/items", "GET /v1/menu", "POST /v1/orders", "GET /v1/menu",
	"GET /v1/orders", "GET /v1/menu", "GET /v1/items/{id}", "PUT /v1/cart/items/{id}", "GET /v1/menu",
	"GET /v1/items", "GET /v1/menu", "GET /v1/items/{id}", "POST /v1/orders", "GET /v1/menu",
	"GET /v1/cart", "GET /v1/menu", "GET /v1/items", "GET /v1/menu", "PUT /v1/cart/items/{id}",
	"GET /v1/menu", "GET /v1/items/{id}", "GET /v1/menu", "POST /v1/orders", "GET /v1/orders",
	"GET /v1/menu", "GET /v1/items/{id}",
}

// closedLoop runs users who each send their next request of the journey
// as soon as the last is answered (a refused one at the next answer, as
// after a Retry-After), against one CPU that finishes the oldest request
// in the handler every service. It returns after steps answers.
func (s *sim) closedLoop(users, steps int, service time.Duration) {
	next := make([]int, users)
	var retry []int
	s.onAnswer = func(r simResult) {
		u := r.job.user
		if r.refused {
			retry = append(retry, u)
			return
		}
		next[u] = (next[u] + 1) % len(journey)
		s.send(u, journey[next[u]])
	}
	for u := range users {
		next[u] = u % len(journey) // users spread over the journey
		s.send(u, journey[next[u]])
		s.settle()
	}
	for range steps {
		s.advance(service)
		if len(s.inService) > 0 {
			s.finishOldest()
		}
		s.settle()
		for _, u := range retry {
			s.send(u, journey[next[u]])
		}
		retry = retry[:0]
		s.settle()
	}
}

// closedLoopUnderQuota runs users as closedLoop does, for total, against
// one CPU that spends service on the oldest request in the handler
// whenever runs says it runs; time moves in steps of tick. A refused user
// sends again on the next tick the CPU runs with work in hand, unless
// s.resendAtOnce: then on the next tick whatever the CPU does (loadlab's
// closed-loop user does not wait out a Retry-After).
func (s *sim) closedLoopUnderQuota(users int, total, tick, service time.Duration, runs func(elapsed time.Duration) bool) {
	next := make([]int, users)
	var retry []int
	s.onAnswer = func(r simResult) {
		u := r.job.user
		if r.refused {
			retry = append(retry, u)
			return
		}
		next[u] = (next[u] + 1) % len(journey)
		s.send(u, journey[next[u]])
	}
	for u := range users {
		next[u] = u % len(journey)
		s.send(u, journey[next[u]])
		s.settle()
	}
	var worked time.Duration
	for elapsed := time.Duration(0); elapsed < total; elapsed += tick {
		s.advance(tick)
		worked = s.work(worked, tick, service, runs(elapsed), elapsed)
		s.settle()
		if s.resendAtOnce || len(s.inService) > 0 && runs(elapsed) {
			for _, u := range retry {
				s.send(u, journey[next[u]])
			}
			retry = retry[:0]
			s.settle()
		}
	}
}

// work spends a tick of the CPU, when it runs, on the oldest request in
// the handler that is its (with s.database set, the reads), which has had
// worked of it so far, and finishes it once it had service
// (s.writeService for a write, when set); it returns the oldest's work
// after the tick. With s.database set, the database spends the tick on the
// oldest write in the handler when it runs at elapsed.
func (s *sim) work(worked, tick, service time.Duration, running bool, elapsed time.Duration) time.Duration {
	if s.database != nil && s.database(elapsed) {
		s.dbWorked = s.spend(s.dbWorked, tick, s.writeService, func(j *simJob) bool { return writes(j.spec) })
	}
	if !running {
		return worked
	}
	if s.writeService > 0 && s.database == nil && len(s.inService) > 0 && writes(s.inService[0].spec) {
		service = s.writeService
	}
	return s.spend(worked, tick, service, func(j *simJob) bool { return s.database == nil || !writes(j.spec) })
}

// spend gives a tick to the oldest request in the handler that mine
// picks, which has had worked so far, and finishes it once it had
// service; it returns the oldest's work after the tick.
func (s *sim) spend(worked, tick, service time.Duration, mine func(*simJob) bool) time.Duration {
	i := slices.IndexFunc(s.inService, mine)
	if i < 0 {
		return worked
	}
	worked += tick
	if worked < service {
		return worked
	}
	j := s.inService[i]
	s.inService = slices.Delete(s.inService, i, i+1)
	close(j.release)
	return 0
}

// openLoop sends the journey's requests (users unnamed) one every
// interarrival, for total, against one CPU that spends service on the
// oldest request in the handler whenever runs says it runs (a CPU quota
// throttles it otherwise); time moves in steps of tick.
func (s *sim) openLoop(total, tick, interarrival, service time.Duration, runs func(elapsed time.Duration) bool) {
	var worked, sinceArrival time.Duration
	n := 0
	for elapsed := time.Duration(0); elapsed < total; elapsed += tick {
		if sinceArrival <= 0 {
			s.send(n, journey[n%len(journey)])
			n++
			sinceArrival = interarrival
		}
		s.settle()
		s.advance(tick)
		sinceArrival -= tick
		worked = s.work(worked, tick, service, runs(elapsed), elapsed)
		s.settle()
	}
}

func (s *sim) refusals() (n int) {
	for _, c := range s.tally {
		n += c.refused
	}
	return n
}

func (s *sim) slowest() (d time.Duration) {
	for _, c := range s.tally {
		for _, r := range c.responses {
			d = max(d, r)
		}
	}
	return d
}

// atFloor is the default's configuration with the adaptive limiter held
// where it may fall to on one CPU (4: its floor), as it did in bench.sh's
// first run; requests wait for the test, not the wall clock, and the
// priority threshold follows every request. In split mode (the default
// now) none of this applies.
func atFloor(cfg AdmissionConfig) AdmissionConfig {
	cfg = oneCPU(cfg)
	cfg.InitialLimit, cfg.MaxLimit = cfg.MinLimit, cfg.MinLimit
	cfg.Recalibrate = -1
	if !cfg.Split {
		cfg.MaxWait = time.Hour
	}
	return cfg
}

// A closed loop of users whose every request is answered within its
// objective is a load the replica serves: the default admits all of it,
// however many of them wait for a slot (bench.sh's first run: 16 users,
// one CPU, about 0.3 ms a request; 2.9 % and 5.6 % were refused). 64
// users at 0.3 ms a request still answer within 20 ms.
// oneCPU sizes split admission's bounds as on one CPU (GOMAXPROCS 1,
// bench.sh's shop), whatever this machine has.
func oneCPU(cfg AdmissionConfig) AdmissionConfig {
	cfg.ReadSlots, cfg.WriteSlots = 4, 2
	return cfg
}

func TestAClosedLoopWithinObjectiveIsNeverRefused(t *testing.T) {
	for _, users := range []int{16, 64} {
		t.Run(strconv.Itoa(users)+" users", func(t *testing.T) {
			s := newSim(t, atFloor(DefaultAdmission(1)))
			s.closedLoop(users, 40*users, 300*time.Microsecond)
			if slow := s.slowest(); slow > 50*time.Millisecond {
				t.Fatalf("the slowest answer took %v: not a load served within objective (the test's premise)", slow)
			}
			if n := s.refusals(); n > 0 {
				t.Fatalf("%d of %d requests refused at a load served within objective (slowest answer %v); by class: %s", n, s.sent, s.slowest(), s.classes())
			}
		})
	}
}

// What made the adaptive limiter unfit for the default, shown the same
// way: at its floor of 4 on one CPU, 16 closed-loop users keep three limits'
// worth queued, and it refuses browsing though every answer comes within
// a few milliseconds.
func TestTheAdaptiveLimiterAtItsFloorRefusesAClosedLoop(t *testing.T) {
	cfg := DefaultAdmission(1)
	cfg.Split = false
	s := newSim(t, atFloor(cfg))
	s.closedLoop(16, 640, 300*time.Microsecond)
	if n := s.refusals(); n == 0 {
		t.Fatalf("no refusal: the adaptive limiter no longer refuses a closed loop at its floor; docs/reliability.md says it does")
	}
	t.Logf("%d of %d refused; by class: %s", s.refusals(), s.sent, s.classes())
}

// A replica under a CPU quota of 0.1 core (the kernel's 100 ms period)
// runs 10 ms, then waits 90 ms: a request that came at the wrong moment
// waits most of a period, past its objective, though the replica keeps up
// (here at 80 % of its quota, its queue drained in every period). That is
// no overload, and nothing is refused.
func TestAThrottledReplicaBelowItsQuotaRefusesNothing(t *testing.T) {
	s := newSim(t, oneCPU(DefaultAdmission(1)))
	throttled := func(elapsed time.Duration) bool { return elapsed%(100*time.Millisecond) < 10*time.Millisecond }
	// 0.25 ms a request: 40 a period in 10 ms of CPU; 32 come (80 %).
	s.openLoop(3*time.Second, 50*time.Microsecond, 3125*time.Microsecond, 250*time.Microsecond, throttled)
	if n := s.refusals(); n > 0 {
		t.Fatalf("%d of %d requests refused below the quota (slowest answer %v); by class: %s", n, s.sent, s.slowest(), s.classes())
	}
	if s.slowest() <= 50*time.Millisecond {
		t.Fatalf("the slowest answer took %v: the quota did not hold requests past their objective (the test's premise)", s.slowest())
	}
}

// A closed loop's users wait past their objectives when the replica is
// slow for them (here one CPU under a 0.1-core quota: 0.5 ms of CPU a
// request, run 10 ms in every 100 ms, so 16 users wait about 100 ms and
// 64 about 400 ms a request; or 5 ms a request at full speed): still no
// overload, since each user sends again
// only once answered and refusing one only sends it back. Nothing is
// refused. The standing-queue rule refused from the first 500 ms on (on
// cluster replicas at 0.1 core, 13 to 23 % of requests), as did the
// queue that 16 users keep on one replica at full speed.
func TestAClosedLoopPastItsObjectivesIsNeverRefused(t *testing.T) {
	throttled := func(elapsed time.Duration) bool { return elapsed%(100*time.Millisecond) < 10*time.Millisecond }
	for _, tc := range []struct {
		name    string
		users   int
		service time.Duration
		runs    func(time.Duration) bool
	}{
		{"16 users under a quota", 16, 500 * time.Microsecond, throttled},
		{"64 users under a quota", 64, 500 * time.Microsecond, throttled},
		{"16 users, 5 ms a request", 16, 5 * time.Millisecond, func(time.Duration) bool { return true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, oneCPU(DefaultAdmission(1)))
			s.closedLoopUnderQuota(tc.users, 3*time.Second, 100*time.Microsecond, tc.service, tc.runs)
			if s.slowest() <= 50*time.Millisecond {
				t.Fatalf("the slowest answer took %v: no answer past its objective (the test's premise)", s.slowest())
			}
			if n := s.refusals(); n > 0 {
				t.Fatalf("%d of %d requests of a closed loop refused (slowest answer %v); by class: %s", n, s.sent, s.slowest(), s.classes())
			}
			t.Logf("%d requests, none refused; slowest answer %v", s.sent, s.slowest())
		})
	}
}

// Open-loop arrivals at three times what the CPU serves are overload: the
// default sheds browsing first and keeps checkouts. Once the queue stands,
// at least 95 % of checkouts are answered, within their objective, while
// most browsing is refused, and at least 0.9 of the capacity is answered
// within objective; the queue stays bounded.
func TestOverloadIsShedBrowsingFirstKeepingCheckouts(t *testing.T) {
	s := overload(t, oneCPU(DefaultAdmission(1)))
	checkout := s.tally[shedLast]
	browsing := s.tally[shedFirst]
	if ok := float64(checkout.withinObjective) / float64(checkout.sent); ok < 0.95 {
		t.Errorf("%d of %d checkout-class requests answered within objective (%.1f %%), want at least 95 %%", checkout.withinObjective, checkout.sent, 100*ok)
	}
	if shed := float64(browsing.refused) / float64(browsing.sent); shed < 0.5 {
		t.Errorf("%d of %d browsing requests refused, want most: browsing is shed first", browsing.refused, browsing.sent)
	}
	if capacity := int(2 * time.Second / overloadService); float64(s.goodput) < 0.9*float64(capacity) {
		t.Errorf("goodput %d answers within objective in the last 2 s, want at least 0.9 of the capacity, %d", s.goodput, capacity)
	}
	if p99 := percentile(checkout.responses, 0.99); p99 > specOf("POST /v1/orders").objective {
		t.Errorf("admitted checkout-class p99 %v, past checkout's objective", p99)
	}
	if s.maxQueued > 64*(4+2) {
		t.Errorf("%d requests queued at most, past the bound of 64 a slot", s.maxQueued)
	}
}

// With more read slots than write slots (the two-CPU sizes, 8 and 2, on
// the one-CPU model), reads took four fifths of the CPU and only 72 % of
// checkout-class requests were answered within objective: each bound
// ranked classes only within itself. A class refused by one bound now
// sheds the classes below it in the other for a few service times.
func TestOverloadOfTheReadsYieldsTheCPUToRefusedCheckouts(t *testing.T) {
	cfg := DefaultAdmission(2)
	cfg.ReadSlots, cfg.WriteSlots = 8, 2
	s := overload(t, cfg)
	checkout := s.tally[shedLast]
	if ok := float64(checkout.withinObjective) / float64(checkout.sent); ok < 0.85 {
		t.Errorf("%d of %d checkout-class requests answered within objective (%.1f %%), want at least 85 %%", checkout.withinObjective, checkout.sent, 100*ok)
	}
	if capacity := int(2 * time.Second / overloadService); float64(s.goodput) < 0.9*float64(capacity) {
		t.Errorf("goodput %d answers within objective in the last 2 s, want at least 0.9 of the capacity, %d", s.goodput, capacity)
	}
}

// Open-loop arrivals a fifth past what the CPU serves are overload too,
// though no window's arrivals outrun the slots by the margin a burst is
// allowed (a third of what they serve): the excess adds up window after
// window, and before, it was never judged overload, so every request
// queued for as long as its deadline allowed, seconds past its objective
// (at 3x on a 0.1-core replica, what the process reads is held near what
// it serves by its own CPU, and the refusals stopped for 1 to 2.4 s at a
// time while admitted requests took seconds: docs/reliability.md, "Where
// the CPU goes at 3x"). Now it is shed as 3x is: checkouts kept, at least
// 0.9 of the capacity answered within objective once the excess is seen.
func TestASmallSustainedExcessIsOverload(t *testing.T) {
	const service = overloadService
	s := newSim(t, oneCPU(DefaultAdmission(1)))
	s.goodputFrom = s.clock.Now().Add(1500 * time.Millisecond)
	interarrival := service * 5 / 6 // 1.2 times what the CPU serves
	s.openLoop(4*time.Second, 50*time.Microsecond, interarrival, service, func(time.Duration) bool { return true })
	capacity := int(2500 * time.Millisecond / service)
	t.Logf("by class: %s; goodput %d in the last 2.5 s (capacity %d); most queued %d", s.classes(), s.goodput, capacity, s.maxQueued)
	checkout := s.tally[shedLast]
	if ok := float64(checkout.withinObjective) / float64(checkout.sent); ok < 0.95 {
		t.Errorf("%d of %d checkout-class requests answered within objective (%.1f %%), want at least 95 %%", checkout.withinObjective, checkout.sent, 100*ok)
	}
	if float64(s.goodput) < 0.9*float64(capacity) {
		t.Errorf("goodput %d answers within objective in the last 2.5 s, want at least 0.9 of the capacity, %d", s.goodput, capacity)
	}
}

const overloadService = 300 * time.Microsecond

// overload runs the journey open loop at three times what one CPU serves
// (0.3 ms a request) for 3 s; goodput counts the last 2 s.
func overload(t *testing.T, cfg AdmissionConfig) *sim {
	const service = overloadService
	s := newSim(t, cfg)
	s.goodputFrom = s.clock.Now().Add(time.Second) // after the queue stood and the burst drained
	total := 3 * time.Second
	s.openLoop(total, 50*time.Microsecond, service/3, service, func(time.Duration) bool { return true })
	t.Logf("by class: %s; goodput %d in the last 2 s (capacity %d); most queued %d", s.classes(), s.goodput, int(2*time.Second/service), s.maxQueued)
	return s
}

func (s *sim) classes() string {
	var b strings.Builder
	for c := shedFirst; c < numShedClasses; c++ {
		x := s.tally[c]
		b.WriteString(c.String() + " " + strconv.Itoa(x.refused) + "/" + strconv.Itoa(x.sent) + " refused, " + strconv.Itoa(x.withinObjective) + " within objective; ")
	}
	return b.String()
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// A one-second stall of the database (under a 0.15-core quota, an
// autovacuum run) holds the write slots while a closed loop's users go on
// browsing and come to a write one by one. That is no overload: they come
// no faster than the write slots served them before the stall. Yet it read as one (each
// window's arrivals past twice the slots, nothing served) and then fed
// itself: a refused user sends again at once (loadlab does not wait out
// Retry-After), each refusal an arrival, so arrivals outran the slots in
// every window after. loadlab's replicas measure (32 users, one replica of
// 0.1 core) saw 40 % of its requests refused. Here: 32 users, a read
// 0.6 ms of CPU under a 0.1-core quota (100 ms period), a write 2 ms of
// the database's, which stalls for 1 s. The old rule refused 36,370 of
// 37,277 requests.
func TestAClosedLoopThroughADatabaseStallIsNeverRefused(t *testing.T) {
	throttled := func(elapsed time.Duration) bool { return elapsed%(100*time.Millisecond) < 10*time.Millisecond }
	s := newSim(t, oneCPU(DefaultAdmission(1)))
	s.writeService = 2 * time.Millisecond
	s.resendAtOnce = true
	s.database = func(elapsed time.Duration) bool { return elapsed < 2*time.Second || elapsed >= 3*time.Second }
	s.closedLoopUnderQuota(32, 5*time.Second, 100*time.Microsecond, 600*time.Microsecond, throttled)
	if s.slowest() < time.Second {
		t.Fatalf("the slowest answer took %v: no write waited out the stall (the test's premise)", s.slowest())
	}
	if n := s.refusals(); n > 0 {
		t.Fatalf("%d of %d requests of a closed loop refused through a database stall (slowest answer %v); by class: %s", n, s.sent, s.slowest(), s.classes())
	}
}

// An open loop at half and at the whole of the capacity (one CPU under a
// 0.1-core quota of 10 ms periods, overload.sh's; a read 0.25 ms of CPU,
// a write 1 ms of the database's) through a 600 ms stall of the database
// is no overload either: the writes come in the stall no faster than the
// write slots served them before it, and are served once it ends. The old
// rule refused 30 of 642 at 0.5x and 57 of 1,283 at 1x, the cross-bound
// rule taking browsing with them (overload.sh: 160 and 1,916 refused).
func TestAnOpenLoopUpToCapacityThroughADatabaseStallIsNeverRefused(t *testing.T) {
	quota := func(elapsed time.Duration) bool { return elapsed%(10*time.Millisecond) < time.Millisecond }
	const read, write = 250 * time.Microsecond, time.Millisecond
	perRequest := (31*read + 7*write) / 38 // the journey: 7 writes in 38 requests
	for _, load := range []float64{0.5, 1} {
		t.Run(strconv.FormatFloat(load, 'f', -1, 64)+"x", func(t *testing.T) {
			s := newSim(t, oneCPU(DefaultAdmission(1)))
			s.writeService = write
			s.database = func(elapsed time.Duration) bool {
				return elapsed < 2*time.Second || elapsed >= 2600*time.Millisecond
			}
			s.openLoop(5*time.Second, 50*time.Microsecond, time.Duration(float64(10*perRequest)/load), read, quota)
			if s.slowest() < 500*time.Millisecond {
				t.Fatalf("the slowest answer took %v: no write waited out the stall (the test's premise)", s.slowest())
			}
			if n := s.refusals(); n > 0 {
				t.Fatalf("%d of %d requests refused at %vx the capacity (slowest answer %v); by class: %s", n, s.sent, load, s.slowest(), s.classes())
			}
		})
	}
}
