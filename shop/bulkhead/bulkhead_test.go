package bulkhead

import (
	"errors"
	"testing"
	"time"
)

// t0 is the time the tests' requests arrive at, unless they say otherwise.
var t0 = time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)

func granted(w *Waiter) bool {
	select {
	case <-w.Ready():
		return true
	default:
		return false
	}
}

// fill takes every slot of b with requests of class 0.
func fill(t *testing.T, b *Bulkhead) {
	t.Helper()
	for range b.Stats().Slots {
		w, err := b.Enter(0, time.Second, t0)
		if err != nil || !granted(w) {
			t.Fatalf("a free slot was not granted at once: %v", err)
		}
	}
}

func TestAFreeSlotIsGrantedAtOnce(t *testing.T) {
	b := New(Config{Slots: 2, Classes: 3})
	for i := range 2 {
		w, err := b.Enter(0, 0, t0)
		if err != nil || !granted(w) || w.MaxWait != 0 {
			t.Fatalf("request %d: err %v, granted %v, MaxWait %v; want granted at once", i, err, granted(w), w.MaxWait)
		}
	}
	if s := b.Stats(); s.InFlight != 2 || s.Queued != 0 {
		t.Fatalf("stats %+v, want 2 in flight, none queued", s)
	}
}

// The expected wait is Little's law: (ahead+1) x service / slots, ahead
// counting the waiters of the newcomer's class or higher; once the queue
// stands (here at once), a request is refused at once when that wait and
// its own service pass its budget.
func TestRefusalByExpectedWait(t *testing.T) {
	const svc = 10 * time.Millisecond
	for _, tc := range []struct {
		name   string
		slots  int
		queued []int // classes already waiting
		class  int
		budget time.Duration
		refuse bool
	}{
		// 2 slots, 10 ms each: a slot frees every 5 ms.
		{name: "empty queue, wait 5 ms + 10 ms within 50", slots: 2, class: 0, budget: 50 * time.Millisecond},
		{name: "empty queue, budget shorter than the service", slots: 2, class: 2, budget: 12 * time.Millisecond, refuse: true},
		{name: "7 ahead: 40 ms + 10 ms within 50", slots: 2, queued: []int{0, 0, 0, 0, 0, 0, 0}, class: 0, budget: 50 * time.Millisecond},
		{name: "8 ahead: 45 ms + 10 ms past 50", slots: 2, queued: []int{0, 0, 0, 0, 0, 0, 0, 0}, class: 0, budget: 50 * time.Millisecond, refuse: true},
		{name: "8 of a lower class ahead do not count", slots: 2, queued: []int{0, 0, 0, 0, 0, 0, 0, 0}, class: 1, budget: 50 * time.Millisecond},
		{name: "8 of a higher class ahead count", slots: 2, queued: []int{2, 2, 2, 2, 2, 2, 2, 2}, class: 1, budget: 50 * time.Millisecond, refuse: true},
		{name: "one slot: 1 ahead, 20 ms + 10 ms past 25", slots: 1, queued: []int{1}, class: 1, budget: 25 * time.Millisecond, refuse: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Config{Slots: tc.slots, Classes: 3, Sustained: -1})
			fill(t, b)
			// Learn the service time: release one slot after 10 ms and take
			// it back.
			b.Release(svc)
			fill2, err := b.Enter(0, time.Second, t0)
			if err != nil || !granted(fill2) {
				t.Fatalf("the freed slot was not granted: %v", err)
			}
			for _, c := range tc.queued {
				if _, err := b.Enter(c, time.Hour, t0); err != nil {
					t.Fatalf("setting up the queue: %v", err)
				}
			}
			// RefuseAtOnce, for a caller that cannot wait, agrees with
			// Enter, and changes nothing when it does not refuse.
			before := b.Stats()
			if got := b.RefuseAtOnce(tc.class, tc.budget, t0); got != tc.refuse {
				t.Fatalf("RefuseAtOnce %v, want %v", got, tc.refuse)
			}
			if after := b.Stats(); after != before {
				t.Fatalf("RefuseAtOnce changed the stats: %+v -> %+v", before, after)
			}
			w, err := b.Enter(tc.class, tc.budget, t0)
			if tc.refuse {
				if !errors.Is(err, ErrFull) {
					t.Fatalf("err %v, want ErrFull", err)
				}
				return
			}
			if err != nil || granted(w) {
				t.Fatalf("err %v, granted %v; want queued", err, err == nil && granted(w))
			}
			if w.MaxWait != tc.budget-svc {
				t.Fatalf("MaxWait %v, want the budget less the service time, %v", w.MaxWait, tc.budget-svc)
			}
		})
	}
}

func TestSlotsGoToTheHighestClassFirstThenInArrivalOrder(t *testing.T) {
	b := New(Config{Slots: 1, Classes: 3})
	fill(t, b)
	var order []*Waiter
	for _, c := range []int{0, 1, 2, 1, 0, 2} {
		w, err := b.Enter(c, time.Hour, t0)
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, w)
	}
	want := []int{2, 5, 1, 3, 0, 4} // indexes into order, served in turn
	for i := range want {
		b.Release(time.Millisecond)
		for j, w := range order {
			if got, should := granted(w), contains(want[:i+1], j); got != should {
				t.Fatalf("after %d releases waiter %d (class %d) granted %v, want %v", i+1, j, w.class, got, should)
			}
		}
	}
	if s := b.Stats(); s.InFlight != 1 || s.Queued != 0 {
		t.Fatalf("stats %+v, want 1 in flight, none queued", s)
	}
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestAWaiterThatLeftIsNotGrantedAndAGrantedOneKeepsItsSlot(t *testing.T) {
	b := New(Config{Slots: 1, Classes: 2})
	fill(t, b)
	gone, _ := b.Enter(1, time.Hour, t0)
	next, _ := b.Enter(0, time.Hour, t0)
	if !b.Leave(gone) {
		t.Fatal("Leave of a waiting request reported it granted")
	}
	b.Release(time.Millisecond)
	if granted(gone) || !granted(next) {
		t.Fatalf("granted: the one that left %v, the next %v; want only the next", granted(gone), granted(next))
	}
	if b.Leave(next) {
		t.Fatal("Leave of a granted request reported it not granted: its slot would leak")
	}
	b.Drop()
	if s := b.Stats(); s.InFlight != 0 || s.Queued != 0 {
		t.Fatalf("stats %+v, want nothing in flight or queued", s)
	}
}

func TestTheQueueIsBoundedWhateverTheServiceTime(t *testing.T) {
	b := New(Config{Slots: 1, Classes: 1, MaxQueue: 3, Sustained: -1})
	fill(t, b)
	for i := range 3 {
		if _, err := b.Enter(0, time.Hour, t0); err != nil {
			t.Fatalf("waiter %d refused with no service time known: %v", i, err)
		}
	}
	if _, err := b.Enter(0, time.Hour, t0); !errors.Is(err, ErrFull) {
		t.Fatalf("a fourth waiter: err %v, want ErrFull", err)
	}
}

func TestServiceTimeIsAMovingAverageOfTheHolds(t *testing.T) {
	b := New(Config{Slots: 1, Weight: 0.5})
	for _, d := range []time.Duration{8 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond} {
		fill(t, b)
		b.Release(d)
	}
	fill(t, b)
	b.Drop() // not counted
	if got, want := b.Stats().Service, 5*time.Millisecond; got != want {
		t.Fatalf("service %v, want %v (8, then halfway to 4 twice)", got, want)
	}
}

// A closed loop of users keeps a queue as long as it runs: here 12 users
// on one slot of 10 ms, each sending its next request as soon as it is
// answered, so 11 always wait and a newcomer can expect 120 ms, past its
// 50 ms budget, for 3 s. That is the load the slot serves, at the wait
// its users make, not overload: every request queues and nothing is
// refused. The old rule (a queue that stood 500 ms without emptying)
// refused from 500 ms on, as it refused 16 users on a cluster replica.
func TestAClosedLoopIsNeverOverloadedWhateverItsWait(t *testing.T) {
	const svc = 10 * time.Millisecond
	b := New(Config{Slots: 1, Classes: 3})
	fill(t, b)
	b.Release(svc)
	fill(t, b)
	now := t0
	for range 11 {
		if _, err := b.Enter(0, 50*time.Millisecond, now); err != nil {
			t.Fatalf("a user's first request: %v", err)
		}
	}
	for i := range 300 {
		now = now.Add(svc)
		b.Release(svc) // one answered, the next waiter takes the slot
		if _, err := b.Enter(0, 50*time.Millisecond, now); err != nil {
			t.Fatalf("the answered user's next request at +%v (%d answered): %v, want queued", now.Sub(t0), i+1, err)
		}
		if over, _ := b.Overloaded(now); over {
			t.Fatalf("a closed loop counts as overloaded at +%v", now.Sub(t0))
		}
	}
	if s := b.Stats(); s.Queued != 11 {
		t.Fatalf("%d queued, want the closed loop's 11 (the test's premise)", s.Queued)
	}
}

// Open-loop arrivals at three times what the slot serves (one every
// 10/3 ms, a slot of 10 ms) outrun it window after window: after two
// windows of 250 ms it is overloaded and a request past its budget is
// refused at once; before, every request queues (a burst may be served
// in the next window). Once the arrivals stop and the queue is served,
// it is no longer overloaded.
func TestArrivalsOutrunningTheSlotsForTwoWindowsAreOverload(t *testing.T) {
	const svc = 10 * time.Millisecond
	b := New(Config{Slots: 1, Classes: 3, MaxQueue: 10000})
	fill(t, b)
	b.Release(svc)
	fill(t, b)
	refusedFrom := time.Duration(-1)
	for step := range 180 { // 600 ms in steps of 10/3 ms
		now := t0.Add(time.Duration(step) * svc / 3)
		if step%3 == 0 && step > 0 {
			b.Release(svc)
		}
		_, err := b.Enter(0, 50*time.Millisecond, now)
		switch {
		case err == nil && refusedFrom >= 0:
			t.Fatalf("queued at +%v after refusals from +%v", now.Sub(t0), refusedFrom)
		case err != nil && refusedFrom < 0:
			refusedFrom = now.Sub(t0)
		}
	}
	if refusedFrom < 500*time.Millisecond || refusedFrom > 510*time.Millisecond {
		t.Fatalf("first refusal at +%v, want at the end of the second window, +500 ms", refusedFrom)
	}
	// The arrivals stop; the slot serves the queue.
	now := t0.Add(600 * time.Millisecond)
	for b.Stats().Queued > 0 {
		now = now.Add(svc)
		b.Release(svc)
		b.Overloaded(now)
	}
	if over, _ := b.Overloaded(now); over {
		t.Fatal("an empty queue counts as overloaded")
	}
	if _, err := b.Enter(0, 50*time.Millisecond, now); err != nil {
		t.Fatalf("after the overload: %v, want granted or queued", err)
	}
}

// Arrivals a fifth past the slots (six requests for every five a 10 ms
// slot serves) outrun no window by the margin, a third of what it
// serves, but the excess adds up: overload from the third window on.
// Before, it never was, and every request queued as long as its budget
// allowed whatever its wait.
func TestASmallSustainedExcessIsOverload(t *testing.T) {
	const svc = 10 * time.Millisecond
	b := New(Config{Slots: 1, Classes: 3, MaxQueue: 10000})
	fill(t, b)
	b.Release(svc)
	fill(t, b)
	refusedFrom := time.Duration(-1)
	for step := range 720 { // 1.2 s in steps of 10/6 ms
		now := t0.Add(time.Duration(step) * svc / 6)
		if step%6 == 0 && step > 0 {
			b.Release(svc)
		}
		if step%5 == 0 {
			if _, err := b.Enter(0, 50*time.Millisecond, now); err != nil && refusedFrom < 0 {
				refusedFrom = now.Sub(t0)
			}
		}
	}
	if refusedFrom < 0 {
		t.Fatal("arrivals a fifth past the slot for 1.2 s: nothing refused, though the queue grew all along")
	}
	if refusedFrom < 500*time.Millisecond || refusedFrom > 760*time.Millisecond {
		t.Fatalf("first refusal at +%v, want at the end of the third window, +750 ms", refusedFrom)
	}
}

// A burst (here 40 requests at once on one slot of 10 ms, the queue
// standing for 400 ms while a quota's periods or a closed loop's start
// serve it) outruns the slot in one window and is served in the next: it
// is never overloaded, though every newcomer meanwhile expects to wait
// past its budget.
func TestABurstServedInTheNextWindowIsNotOverload(t *testing.T) {
	const svc = 10 * time.Millisecond
	b := New(Config{Slots: 1, Classes: 3})
	fill(t, b)
	b.Release(svc)
	fill(t, b)
	for range 40 {
		if _, err := b.Enter(0, 50*time.Millisecond, t0); err != nil {
			t.Fatalf("a request of the burst: %v, want queued", err)
		}
	}
	for i := range 40 {
		now := t0.Add(time.Duration(i+1) * svc)
		b.Release(svc)
		if over, _ := b.Overloaded(now); over {
			t.Fatalf("overloaded at +%v while the burst is served", now.Sub(t0))
		}
		if i%4 == 0 {
			// A newcomer now and then, each expecting to wait past its budget.
			if _, err := b.Enter(0, 50*time.Millisecond, now); err != nil {
				t.Fatalf("a newcomer at +%v: %v, want queued", now.Sub(t0), err)
			}
		}
	}
}

// A stall of the slots' own work (the database's, for the write bound: an
// autovacuum run under its quota) serves nothing for a second while
// requests go on coming as before, here 25 a window to two slots of 2 ms
// that served them for a second first. That is no overload, and nobody
// is refused: they are served when the stall ends. The old rule (more
// came than were served, by twice the slots) called it overload at the
// end of the stall's second window.
func TestAStallOfTheSlotsIsNoOverload(t *testing.T) {
	const svc = 2 * time.Millisecond
	b := New(Config{Slots: 2, Classes: 3, MaxQueue: 10000})
	at := func(step int) time.Time { return t0.Add(time.Duration(step) * 10 * time.Millisecond) }
	for step := range 100 { // a second served as it comes
		if _, err := b.Enter(2, 50*time.Millisecond, at(step)); err != nil {
			t.Fatalf("a request at +%v before the stall: %v", at(step).Sub(t0), err)
		}
		b.Release(svc)
	}
	fill(t, b) // the stall: both slots held for a second
	for step := 100; step < 200; step++ {
		now := at(step)
		if step%4 == 0 {
			if over, _ := b.Overloaded(now); over {
				t.Fatalf("overloaded at +%v in a stall, %d queued", now.Sub(t0), b.Stats().Queued)
			}
		}
		if _, err := b.Enter(2, 50*time.Millisecond, now); err != nil {
			t.Fatalf("a request at +%v in the stall: %v, want queued", now.Sub(t0), err)
		}
	}
}

// A full queue takes a newcomer of a higher class in place of the newest
// waiter of the lowest class, which learns it was evicted; a newcomer of
// the lowest class queued is refused.
func TestAFullQueueMakesRoomForAHigherClass(t *testing.T) {
	b := New(Config{Slots: 1, Classes: 3, MaxQueue: 3})
	fill(t, b)
	old, _ := b.Enter(0, time.Hour, t0)
	newest, _ := b.Enter(0, time.Hour, t0)
	mid, _ := b.Enter(1, time.Hour, t0)
	if _, err := b.Enter(0, time.Hour, t0); !errors.Is(err, ErrFull) {
		t.Fatalf("the lowest class into a full queue: err %v, want ErrFull", err)
	}
	if !b.RefuseAtOnce(0, time.Hour, t0) {
		t.Fatal("RefuseAtOnce of the lowest class into a full queue: false, want true")
	}
	if b.RefuseAtOnce(2, time.Hour, t0) {
		t.Fatal("RefuseAtOnce of a higher class into a full queue: true, want false (Enter would queue it)")
	}
	select {
	case <-newest.Evicted():
		t.Fatal("RefuseAtOnce evicted a waiter")
	default:
	}
	top, err := b.Enter(2, time.Hour, t0)
	if err != nil {
		t.Fatalf("a higher class into a full queue: %v, want queued", err)
	}
	select {
	case <-newest.Evicted():
	default:
		t.Fatal("the newest waiter of the lowest class was not evicted")
	}
	if !b.Leave(newest) {
		t.Fatal("Leave of an evicted waiter reported it granted")
	}
	for i, w := range []*Waiter{top, mid, old} {
		b.Release(time.Millisecond)
		if !granted(w) {
			t.Fatalf("release %d: waiter of class %d not granted", i+1, w.class)
		}
	}
	if granted(newest) {
		t.Fatal("the evicted waiter was granted a slot")
	}
	if s := b.Stats(); s.InFlight != 1 || s.Queued != 0 {
		t.Fatalf("stats %+v, want 1 in flight, none queued", s)
	}
}

// A refusal of a class is heard, for four service times, by every class
// below it, and by no class at or above it; a bulkhead that refused
// nothing sheds nothing for the other bound.
func TestARefusedClassShedsTheClassesBelowItForAWhile(t *testing.T) {
	b := New(Config{Slots: 1, Classes: 3, MaxQueue: 1, Sustained: -1})
	if b.ShedBelow(0, t0) {
		t.Fatal("nothing refused, yet the lowest class is shed")
	}
	fill(t, b)
	b.Release(10 * time.Millisecond) // the service time: 10 ms
	fill(t, b)
	if _, err := b.Enter(1, time.Millisecond, t0); !errors.Is(err, ErrFull) {
		t.Fatalf("a class-1 request past its budget: err %v, want ErrFull", err)
	}
	for _, tc := range []struct {
		class int
		at    time.Duration
		shed  bool
	}{
		{0, 0, true}, {0, 39 * time.Millisecond, true}, {0, 40 * time.Millisecond, false},
		{1, 0, false}, {2, 0, false},
	} {
		if got := b.ShedBelow(tc.class, t0.Add(tc.at)); got != tc.shed {
			t.Errorf("class %d, %v after class 1 was refused: shed %v, want %v", tc.class, tc.at, got, tc.shed)
		}
	}
	b.Refused(2, t0.Add(time.Second))
	if !b.ShedBelow(1, t0.Add(time.Second)) {
		t.Error("a refusal recorded by the caller is not heard")
	}
}
