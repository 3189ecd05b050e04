package jobs_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

type env struct {
	*backend.Backend
}

// A target is a database the jobs run on: the embedded SQLite file or a
// fresh PostgreSQL database (migrated, as `shop migrate` would).
type target struct {
	name string
	cfg  backend.Config
}

func sqliteTarget(t *testing.T) target {
	return target{"sqlite", backend.Config{SQLitePath: filepath.Join(t.TempDir(), "shop.db")}}
}

func postgresTarget(t *testing.T) target {
	cfg := backend.Config{DatabaseURL: pgtest.NewDatabase(t)}
	if _, err := backend.Migrate(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	return target{"postgres", cfg}
}

// eachTarget runs fn as a subtest on each database. The two run at once:
// each has a database of its own (a file, a fresh PostgreSQL database), and
// much of a subtest is waiting on River (a scheduled job, a leader's lease
// running out), so the package takes about the longer of the two rather
// than their sum.
func eachTarget(t *testing.T, fn func(t *testing.T, tg target)) {
	for _, mk := range []struct {
		name string
		make func(*testing.T) target
	}{{"sqlite", sqliteTarget}, {"postgres", postgresTarget}} {
		t.Run(mk.name, func(t *testing.T) {
			t.Parallel()
			fn(t, mk.make(t))
		})
	}
}

// open opens the target with a queue configured by cfg.
func (tg target) open(t *testing.T, cfg jobs.Config) *env {
	t.Helper()
	ctx := context.Background()
	bc := tg.cfg
	bc.Jobs = cfg
	b, err := backend.Open(ctx, bc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Seed(ctx, seed.Items(5)); err != nil {
		t.Fatal(err)
	}
	return &env{Backend: b}
}

// open opens the SQLite database at path with a queue configured by cfg.
func open(t *testing.T, path string, cfg jobs.Config) *env {
	return target{"sqlite", backend.Config{SQLitePath: path}}.open(t, cfg)
}

func (e *env) start(t *testing.T) {
	t.Helper()
	if err := e.Queue.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Queue.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
}

func (e *env) placeOrder(t *testing.T) *shop.Order {
	t.Helper()
	ctx := context.Background()
	_, hash := shop.NewToken()
	sess, err := e.Store.CreateSession(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Store.SetCartItem(ctx, sess.ID, 1, 2); err != nil {
		t.Fatal(err)
	}
	c := shop.Checkout{CustomerName: "Grace Hopper", Email: "grace@example.com"}
	o, _, err := e.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "k", Checkout: c})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// waitForStatus waits until the order has reached want or gone past it.
func waitForStatus(t *testing.T, s shop.Store, id int64, want shop.Status, within time.Duration) {
	t.Helper()
	rank := map[shop.Status]int{shop.StatusPlaced: 0, shop.StatusConfirmed: 1, shop.StatusReady: 2}
	testwait.Eventually(t, within, func() error {
		o, err := s.OrderByID(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if rank[o.Status] < rank[want] {
			return fmt.Errorf("order %d is %q, want %q", id, o.Status, want)
		}
		return nil
	})
}

// queue is the queue's test-only side (export_test.go).
type queue interface {
	Subscribe(kinds ...river.EventKind) (<-chan *river.Event, func())
	Insert(ctx context.Context, args river.JobArgs) error
	InsertAt(ctx context.Context, args river.JobArgs, at time.Time) error
	ScheduleAhead(ctx context.Context, ahead time.Duration) (int, error)
	ScheduleReadyByRiver(ctx context.Context, orderID int64, due time.Time) (bool, error)
}

func (e *env) queue(t *testing.T) queue {
	t.Helper()
	q, ok := e.Queue.(queue)
	if !ok {
		t.Fatalf("the backend's queue is a %T, not a jobs.Queue", e.Queue)
	}
	return q
}

// watch subscribes to the queue's finished jobs; the function it returns
// waits until the given number of jobs of each kind have completed, and
// fails at once on a job that failed or was cancelled. Call it before
// start, so no event is missed.
func (e *env) watch(t *testing.T) func(want map[string]int) {
	t.Helper()
	events, cancel := e.queue(t).Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled)
	t.Cleanup(cancel)
	done := map[string]int{}
	return func(want map[string]int) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			reached := true
			for kind, n := range want {
				reached = reached && done[kind] >= n
			}
			if reached {
				return
			}
			select {
			case ev := <-events:
				if ev.Kind != river.EventKindJobCompleted {
					t.Fatalf("%s job %d: %s: %v", ev.Job.Kind, ev.Job.ID, ev.Kind, ev.Job.Errors)
				}
				done[ev.Job.Kind]++
			case <-timeout:
				t.Fatalf("completed jobs %v after 30s, want %v", done, want)
			}
		}
	}
}

// jobStates lists the states of River's jobs of a kind, on either database.
func jobStates(t *testing.T, e *env, kind string) []string {
	t.Helper()
	var states []string
	if e.SQLite != nil {
		rows, err := e.SQLite.WriteDB().Query(`SELECT state FROM river_job WHERE kind = ? ORDER BY id`, kind)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			states = append(states, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return states
	}
	rows, err := e.Postgres.Pool().Query(context.Background(), `SELECT state::text FROM river_job WHERE kind = $1 ORDER BY id`, kind)
	if err != nil {
		t.Fatal(err)
	}
	states, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return states
}

// statuses lists the order's events, in order.
func statuses(t *testing.T, e *env, orderID int64) []shop.Status {
	t.Helper()
	events, err := e.Store.UnpublishedOrderEvents(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var got []shop.Status
	for _, ev := range events {
		if ev.OrderID == orderID {
			got = append(got, ev.Status)
		}
	}
	return got
}

// checkDoneOnce checks that the order is ready, done once: one mail, one
// event per status, one "ready" job, and each of its placedJobs
// confirmation jobs completed.
func checkDoneOnce(t *testing.T, e *env, o *shop.Order, placedJobs int) {
	t.Helper()
	ctx := context.Background()
	got, err := e.Store.OrderByID(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != shop.StatusReady {
		t.Errorf("order %d is %q, want ready", o.ID, got.Status)
	}
	mails, err := e.Store.Mails(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(mails) != 1 || mails[0].OrderID != o.ID || mails[0].To != o.Email {
		t.Errorf("mails = %+v, want one to %s for order %d", mails, o.Email, o.ID)
	}
	if diff := cmp.Diff([]shop.Status{shop.StatusPlaced, shop.StatusConfirmed, shop.StatusReady}, statuses(t, e, o.ID)); diff != "" {
		t.Errorf("order events (-want +got):\n%s", diff)
	}
	want := map[string][]string{"order_placed": {}, "order_ready": {"completed"}}
	for range placedJobs {
		want["order_placed"] = append(want["order_placed"], "completed")
	}
	for kind, states := range want {
		if diff := cmp.Diff(states, jobStates(t, e, kind)); diff != "" {
			t.Errorf("%s jobs (-want +got):\n%s", kind, diff)
		}
	}
}

// countJobs counts River's jobs of a kind, on either database.
func countJobs(t *testing.T, e *env, kind string) int {
	t.Helper()
	var n int
	var err error
	if e.SQLite != nil {
		err = e.SQLite.WriteDB().QueryRow(`SELECT COUNT(*) FROM river_job WHERE kind = ?`, kind).Scan(&n)
	} else {
		err = e.Postgres.Pool().QueryRow(context.Background(), `SELECT COUNT(*) FROM river_job WHERE kind = $1`, kind).Scan(&n)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func fast() jobs.Config {
	return jobs.Config{Work: true, PrepTime: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond}
}

func TestOrderGoesFromPlacedToReadyWithOneMail(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		e := tg.open(t, fast())
		o := e.placeOrder(t)
		if countJobs(t, e, "order_placed") != 1 {
			t.Fatal("checkout did not enqueue its job")
		}
		wait := e.watch(t)
		e.start(t)
		wait(map[string]int{"order_placed": 1, "order_ready": 1})
		checkDoneOnce(t, e, o, 1)
	})
}

// TestWorkersSayWhenOrderEventsAreCommitted: the confirmation calls
// EventsWritten as it starts (its checkout committed the "placed" event
// with the job) and once its own commit holds "confirmed", the "ready"
// step once its commit holds "ready", so a relay woken then finds each
// event in the outbox. shop/app wakes the worker's relay with it on
// PostgreSQL, where order events notify nobody (migration 00021): a
// notification cost every listening connection of the database a
// transaction per order event. The hook reads the outbox each time it is
// called (no relay runs here, so nothing is marked published).
func TestWorkersSayWhenOrderEventsAreCommitted(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		seen := make(chan string, 10)
		var store shop.Store // set before the queue starts
		cfg := fast()
		cfg.EventsWritten = func() {
			evs, err := store.UnpublishedOrderEvents(context.Background(), 10)
			if err != nil {
				seen <- err.Error()
				return
			}
			var statuses []string
			for _, ev := range evs {
				statuses = append(statuses, string(ev.Status))
			}
			seen <- strings.Join(statuses, " ")
		}
		e := tg.open(t, cfg)
		store = e.Store
		e.placeOrder(t)
		wait := e.watch(t)
		e.start(t)
		wait(map[string]int{"order_placed": 1, "order_ready": 1})
		var got []string
		for len(seen) > 0 {
			got = append(got, <-seen)
		}
		want := []string{"placed", "placed confirmed", "placed confirmed ready"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("outbox at each EventsWritten (-want +got):\n%s", diff)
		}
	})
}

// A confirmation that runs twice for one order (a requeued orphan, a
// retry) confirms it once: one mail, one event per status, one "ready"
// job, and both confirmation jobs completed. The two may run at once.
func TestConfirmationRunTwiceConfirmsOnce(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		e := tg.open(t, fast())
		o := e.placeOrder(t)
		if err := e.queue(t).Insert(context.Background(), jobs.OrderPlacedArgs{OrderID: o.ID}); err != nil {
			t.Fatal(err)
		}
		wait := e.watch(t)
		e.start(t)
		wait(map[string]int{"order_placed": 2, "order_ready": 1})
		checkDoneOnce(t, e, o, 2)
	})
}

// An order found confirmed already (its confirmation committed by an
// earlier run, or by the steps the confirmation used to take one by one)
// still gets its "ready" step scheduled, and the job completes; no mail
// is recorded for it, since the mail goes with the confirmation.
func TestConfirmedOrderIsStillScheduledReady(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		e := tg.open(t, fast())
		o := e.placeOrder(t)
		if moved, err := e.Store.AdvanceOrder(context.Background(), o.ID, shop.StatusPlaced, shop.StatusConfirmed); err != nil || !moved {
			t.Fatalf("confirm by hand: moved %v, err %v", moved, err)
		}
		wait := e.watch(t)
		e.start(t)
		wait(map[string]int{"order_placed": 1, "order_ready": 1})
		got, err := e.Store.OrderByID(context.Background(), o.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != shop.StatusReady {
			t.Fatalf("order %d is %q, want ready", o.ID, got.Status)
		}
		if mails, _ := e.Store.Mails(context.Background()); len(mails) != 0 {
			t.Fatalf("mails = %+v, want none", mails)
		}
		if states := jobStates(t, e, "order_ready"); len(states) != 1 {
			t.Fatalf("order_ready jobs %v, want one", states)
		}
	})
}

// A confirmation's "ready" step waits for its time as an available job,
// never through River's scheduler, whose statement checks every job it
// moves against every other one's unique key (rows read grow with the
// square of the steps due in one of its passes: docs/postgres.md); the
// step runs once due (TestOrderGoesFromPlacedToReadyWithOneMail), not
// before.
func TestReadyStepsWaitAvailableNotScheduled(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		cfg := fast()
		cfg.PrepTime = time.Hour
		e := tg.open(t, cfg)
		var orders []*shop.Order
		for range 3 {
			orders = append(orders, e.placeOrder(t))
		}
		wait := e.watch(t)
		e.start(t)
		wait(map[string]int{"order_placed": 3})
		if diff := cmp.Diff([]string{"available", "available", "available"}, jobStates(t, e, "order_ready")); diff != "" {
			t.Errorf("order_ready jobs (-want +got):\n%s", diff)
		}
		if b, err := e.Queue.Backlog(context.Background()); err != nil || b.Waiting != 0 {
			t.Errorf("backlog with 3 ready steps due in an hour: %+v, %v; want none waiting", b, err)
		}
		if n, err := e.queue(t).ScheduleAhead(context.Background(), 2*time.Hour); err != nil || n != 0 {
			t.Errorf("River's scheduler moved %d jobs due within 2 hours (%v), want none: the ready steps went through it", n, err)
		}
		for _, o := range orders {
			got, err := e.Store.OrderByID(context.Background(), o.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != shop.StatusConfirmed {
				t.Errorf("order %d is %q an hour before its ready step is due, want confirmed", o.ID, got.Status)
			}
		}
	})
}

// TestReadyStepAtOnceIsRiversRow: on PostgreSQL the store writes the
// confirmation's "ready" step itself (ConfirmOrderAtOnce, the row
// jobs.ReadyRow gives), not through River's insert: the row must be the
// one River's insert and the move to "available" write, column by column
// but for the order in its arguments and the key made from them, and the
// unique key must be River's, which the conflicts show: each way finds
// the step the other wrote for an order and writes no second one.
func TestReadyStepAtOnceIsRiversRow(t *testing.T) {
	ctx := context.Background()
	e := postgresTarget(t).open(t, jobs.Config{})
	q := e.queue(t)
	due := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	first, second := e.placeOrder(t).ID, e.placeOrder(t).ID
	atOnce := func(orderID int64) {
		t.Helper()
		next, err := jobs.ReadyRow(orderID, due)
		if err != nil {
			t.Fatal(err)
		}
		done, err := e.Store.ConfirmOrderAtOnce(ctx, shop.ConfirmAtOnce{OrderID: orderID, Mail: jobs.ConfirmationMail, Next: next})
		if err != nil || !done.Handled {
			t.Fatalf("order %d confirmed at once: %+v, %v", orderID, done, err)
		}
	}
	atOnce(first)
	if ok, err := q.ScheduleReadyByRiver(ctx, second, due); err != nil || !ok {
		t.Fatalf("ready step by River: inserted %v, %v", ok, err)
	}
	type row struct {
		Args, Kind, Metadata, Queue, State, UniqueStates, Tags string
		MaxAttempts, Priority, Attempt                         int
		ScheduledAt                                            time.Time
		AttemptedAt, FinalizedAt                               *time.Time
		AttemptedBy                                            []string
		Errors                                                 []string
		KeyIsArgsHash                                          bool
	}
	read := func(orderID int64) row {
		t.Helper()
		var r row
		var key []byte
		err := e.Postgres.Pool().QueryRow(ctx, `SELECT args::text, kind, metadata::text, queue, state::text, unique_states::text,
				tags::text, max_attempts, priority, attempt, scheduled_at, attempted_at, finalized_at,
				coalesce(attempted_by, '{}'), coalesce(errors::text[], '{}'), unique_key
			FROM river_job WHERE kind = 'order_ready' AND (args->>'order_id')::bigint = $1`, orderID).Scan(
			&r.Args, &r.Kind, &r.Metadata, &r.Queue, &r.State, &r.UniqueStates, &r.Tags, &r.MaxAttempts, &r.Priority,
			&r.Attempt, &r.ScheduledAt, &r.AttemptedAt, &r.FinalizedAt, &r.AttemptedBy, &r.Errors, &key)
		if err != nil {
			t.Fatalf("order %d's ready step: %v", orderID, err)
		}
		r.Args = strings.ReplaceAll(r.Args, fmt.Sprint(orderID), "N")
		want := sha256.Sum256([]byte(`&kind=order_ready&args={"order_id":` + fmt.Sprint(orderID) + `}`))
		r.KeyIsArgsHash = string(key) == string(want[:])
		return r
	}
	written, byRiver := read(first), read(second)
	if diff := cmp.Diff(byRiver, written); diff != "" {
		t.Errorf("ready step at once against River's (-River +at once):\n%s", diff)
	}
	if !byRiver.KeyIsArgsHash || byRiver.State != "available" || !byRiver.ScheduledAt.Equal(due) {
		t.Errorf("River's ready step: %+v, want available at %v with its key the hash of kind and args", byRiver, due)
	}
	atOnce(second)
	if n := countJobs(t, e, "order_ready"); n != 2 {
		t.Errorf("%d ready steps for 2 orders after a store's at once for the order River scheduled", n)
	}
	if ok, err := q.ScheduleReadyByRiver(ctx, first, due); err != nil || ok {
		t.Errorf("River's ready step for an order scheduled at once: inserted %v, %v; want none", ok, err)
	}
	if n := countJobs(t, e, "order_ready"); n != 2 {
		t.Errorf("%d ready steps for 2 orders", n)
	}
}

// txTracer records, per connection, the statements of each transaction
// begun with BEGIN, as the client sent them (a batch's one by one), and
// the round trips they took (a batch is one).
type txTracer struct {
	mu       sync.Mutex
	open     map[*pgx.Conn]*tracedTx
	batching map[*pgx.Conn]bool // a batch started; its first statement not seen yet
	done     []*tracedTx
	outside  []string // statements sent outside any transaction block
}

// tracedTx is one transaction's statements and round trips.
type tracedTx struct {
	stmts []string
	trips int
}

// add records a statement; trip says it starts a round trip.
func (tr *txTracer) add(c *pgx.Conn, sql string, trip bool) {
	if tr.open == nil {
		tr.open = map[*pgx.Conn]*tracedTx{}
	}
	word := strings.ToLower(strings.Fields(sql + " x")[0])
	tx := tr.open[c]
	switch {
	case strings.HasPrefix(word, "begin"):
		tr.open[c] = &tracedTx{stmts: []string{sql}, trips: 1}
		return
	case tx == nil:
		tr.outside = append(tr.outside, sql)
		return
	}
	tx.stmts = append(tx.stmts, sql)
	if trip {
		tx.trips++
	}
	if word == "commit" || word == "rollback" {
		tr.done = append(tr.done, tx)
		delete(tr.open, c)
	}
}

// writing returns the finished transactions that sent a statement
// containing s.
func (tr *txTracer) writing(s string) []*tracedTx {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var txs []*tracedTx
	for _, tx := range tr.done {
		if slices.ContainsFunc(tx.stmts, func(sql string) bool { return strings.Contains(sql, s) }) {
			txs = append(txs, tx)
		}
	}
	return txs
}

// outsideWriting returns the statements sent outside a transaction block
// that contain s.
func (tr *txTracer) outsideWriting(s string) []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var stmts []string
	for _, sql := range tr.outside {
		if strings.Contains(sql, s) {
			stmts = append(stmts, sql)
		}
	}
	return stmts
}

func (tr *txTracer) TraceQueryStart(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.add(c, d.SQL, true)
	return ctx
}
func (tr *txTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (tr *txTracer) TraceBatchStart(ctx context.Context, c *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.batching == nil {
		tr.batching = map[*pgx.Conn]bool{}
	}
	tr.batching[c] = true
	return ctx
}
func (tr *txTracer) TraceBatchQuery(_ context.Context, c *pgx.Conn, d pgx.TraceBatchQueryData) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.add(c, d.SQL, tr.batching[c])
	tr.batching[c] = false
}
func (tr *txTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// TestAnOrdersStepsDoRiversWorkInTheirOwnStatements: on PostgreSQL the
// worker's steps of an order do River's part (the "ready" step's insert,
// each job's completion) in statements of their own, none of River's.
// The confirmation's transaction sends five statements in two round trips
// (begin, the setting of its plans and the order's read; the order's move
// with its event, its mail, the "ready" step and the job's completion in
// one statement, and commit), where it took six in five with the store's
// transaction and the queue's statement in it, and River's calls made it
// eight (its insert, the move to "available" and JobCompleteTx's batch
// update, written for many jobs, the most expensive statement per journey
// request: docs/postgres.md). The "ready" step is no transaction of its
// own but one statement, the order's move, its event and the job's
// completion, pipelined after the setting of its plans (one round trip,
// one commit), where it was a transaction of four round trips.
func TestAnOrdersStepsDoRiversWorkInTheirOwnStatements(t *testing.T) {
	tg := postgresTarget(t)
	tr := &txTracer{}
	tg.cfg.Postgres.Tracer = tr
	e := tg.open(t, fast())
	o := e.placeOrder(t)
	wait := e.watch(t)
	e.start(t)
	wait(map[string]int{"order_placed": 1, "order_ready": 1})
	waitForStatus(t, e.Store, o.ID, shop.StatusReady, 10*time.Second)
	txs := tr.writing("order_events")
	if len(txs) != 1 {
		t.Fatalf("%d transactions wrote order events, want only the confirmation's: %d", len(txs), len(txs))
	}
	var river []string
	confirm := txs[0]
	for _, sql := range confirm.stmts {
		if strings.Contains(sql, "-- name: ") {
			river = append(river, strings.Fields(sql)[2])
		}
	}
	if len(river) > 0 || len(confirm.stmts) != 5 || confirm.trips != 2 {
		t.Errorf("the confirmation's transaction sent %d statements in %d round trips, %d of them River's %v; want 5 in 2, none River's:\n%s",
			len(confirm.stmts), confirm.trips, len(river), river, strings.Join(confirm.stmts, "\n---\n"))
	}
	ready := tr.outsideWriting("WITH moved AS")
	if len(ready) != 1 || !strings.Contains(ready[0], "UPDATE river_job") {
		t.Errorf("the ready step outside a transaction: %q, want one statement moving the order and completing its job", ready)
	}
}

// On PostgreSQL an idle worker is woken by LISTEN/NOTIFY when checkout
// inserts a job, not by polling: with a poll interval of an hour the order
// is still confirmed, and the worker's listening connection is there to see.
func TestPostgresWorkersAreWokenByNotifyNotPolling(t *testing.T) {
	tg := postgresTarget(t)
	cfg := fast()
	cfg.PollInterval = time.Hour
	e := tg.open(t, cfg)
	e.start(t)
	testwait.Eventually(t, 20*time.Second, func() error {
		var listening int
		err := e.Postgres.Pool().QueryRow(t.Context(), `SELECT COUNT(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query ILIKE 'listen %'`).Scan(&listening)
		if err != nil {
			t.Fatal(err)
		}
		if listening == 0 {
			return errors.New("no worker connection is listening")
		}
		return nil
	})
	o := e.placeOrder(t)
	waitForStatus(t, e.Store, o.ID, shop.StatusConfirmed, 60*time.Second)
}

func TestFailedCheckoutEnqueuesNothing(t *testing.T) {
	e := open(t, filepath.Join(t.TempDir(), "shop.db"), jobs.Config{})
	ctx := context.Background()
	_, hash := shop.NewToken()
	sess, _ := e.Store.CreateSession(ctx, hash)
	if _, err := e.Store.SetCartItem(ctx, sess.ID, 1, 2); err != nil {
		t.Fatal(err)
	}
	zero := int64(1)
	if _, err := e.Store.UpdateItem(ctx, 1, shop.ItemUpdate{Stock: &zero}); err != nil {
		t.Fatal(err)
	}
	c := shop.Checkout{CustomerName: "A", Email: "a@example.com"}
	_, _, err := e.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "k", Checkout: c})
	var oos *shop.OutOfStockError
	if !errors.As(err, &oos) {
		t.Fatalf("err = %v, want out of stock", err)
	}
	if n := countJobs(t, e, "order_placed"); n != 0 {
		t.Fatalf("a rolled-back checkout left %d jobs", n)
	}
}

// The crash test runs the worker in a child process (this test binary,
// re-executed) that calls the mail provider, makes every write of the
// confirmation (mail, status, event, "ready" job, job completion) and
// then stops dead before the commit, as if the machine lost power. After
// a restart River rescues the job, and the order is confirmed and mailed
// exactly once.
// The child learns its database and where to leave its mark from these.
const (
	childDBEnv   = "SHOP_JOBS_CRASH_CHILD_DB"  // SQLite path
	childURLEnv  = "SHOP_JOBS_CRASH_CHILD_URL" // PostgreSQL URL
	childMarkEnv = "SHOP_JOBS_CRASH_CHILD_MARK"
)

func TestMain(m *testing.M) {
	if mark := os.Getenv(childMarkEnv); mark != "" {
		os.Exit(crashChild(backend.Config{SQLitePath: os.Getenv(childDBEnv), DatabaseURL: os.Getenv(childURLEnv)}, mark))
	}
	os.Exit(m.Run())
}

func crashChild(bc backend.Config, mark string) int {
	ctx := context.Background()
	cfg := fast()
	cfg.SoleWorker = bc.DatabaseURL == "" // on PostgreSQL the worker's lock tells
	cfg.AfterMail = func(int64) {
		// Inside the confirmation's transaction, its writes made: tell the
		// parent, then hang until killed, the transaction uncommitted.
		os.WriteFile(mark, nil, 0o600)
		select {}
	}
	bc.Jobs = cfg
	b, err := backend.Open(ctx, bc)
	if err != nil {
		return 3
	}
	if err := b.Queue.Start(ctx); err != nil {
		return 4
	}
	select {}
}

// A worker killed after mailing, with the confirmation's transaction
// written but not committed: nothing of it survives (no mail recorded, the
// order placed, no "ready" job, the job still running), and after a
// restart the order is confirmed, and mailed, exactly once, within
// seconds. On SQLite the sole worker re-enqueues the orphan at start; on
// PostgreSQL, where workers may run anywhere, a worker re-enqueues the
// jobs of a worker whose advisory lock is free (it died with its session).
func TestKilledMidJobConfirmsExactlyOnceAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test restarts a worker; skipped with -short")
	}
	eachTarget(t, func(t *testing.T, tg target) {
		setup := tg.open(t, jobs.Config{}) // insert-only: nothing runs yet
		o := setup.placeOrder(t)
		setup.Close()

		mark := filepath.Join(t.TempDir(), "mailed")
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), childDBEnv+"="+tg.cfg.SQLitePath, childURLEnv+"="+tg.cfg.DatabaseURL, childMarkEnv+"="+mark)
		child.Stderr = os.Stderr
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		defer child.Process.Kill()
		testwait.Eventually(t, 20*time.Second, func() error {
			if _, err := os.Stat(mark); err != nil {
				return fmt.Errorf("the worker has not reached the mail: %w", err)
			}
			return nil
		})
		if err := child.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		child.Wait()

		// The restart uses the default rescue settings: what brings the
		// order back is the new worker taking up the orphan at start (on
		// SQLite the sole worker, on PostgreSQL the dead worker's lock
		// found free), not a rescue horizon shortened for the test, and
		// River's rescuer (30 s) would be too late for the wait below.
		cfg := fast()
		cfg.SoleWorker = tg.cfg.DatabaseURL == ""
		e := tg.open(t, cfg)
		before, err := e.Store.OrderByID(context.Background(), o.ID)
		if err != nil {
			t.Fatal(err)
		}
		mails, _ := e.Store.Mails(context.Background())
		if before.Status != shop.StatusPlaced || len(mails) != 0 {
			t.Fatalf("after the crash: status %q, %d mails; want placed and none", before.Status, len(mails))
		}
		if diff := cmp.Diff([]string{"running"}, jobStates(t, e, "order_placed")); diff != "" {
			t.Fatalf("order_placed jobs after the crash (-want +got):\n%s", diff)
		}
		if n := countJobs(t, e, "order_ready"); n != 0 {
			t.Fatalf("%d order_ready jobs after the crash, want none", n)
		}
		e.start(t)
		// Confirmed within seconds: the orphan was taken up at start.
		// "ready" is a scheduled job, moved to available by River's
		// scheduler, which runs on the leader: it waits for the dead
		// worker's leader lease to run out.
		waitForStatus(t, e.Store, o.ID, shop.StatusConfirmed, 15*time.Second)
		waitForStatus(t, e.Store, o.ID, shop.StatusReady, 90*time.Second)
		mails, err = e.Store.Mails(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(mails) != 1 {
			t.Fatalf("%d mails after the restart, want exactly 1", len(mails))
		}
		if diff := cmp.Diff([]shop.Status{shop.StatusPlaced, shop.StatusConfirmed, shop.StatusReady}, statuses(t, e, o.ID)); diff != "" {
			t.Fatalf("order events after the restart (-want +got):\n%s", diff)
		}
	})
}

// The backlog counts the jobs due and waiting for a worker and how long
// the oldest has been due; taken jobs leave it, and so do the jobs River's
// scheduler made available ahead of their time (up to its 5 s interval:
// counted, the "ready" steps of a few hundred checkouts a second made the
// embedded default refuse checkouts while its worker kept up).
func TestBacklogCountsWaitingJobs(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		e := tg.open(t, jobs.Config{}) // insert-only: nothing takes the jobs
		ctx := context.Background()
		b, err := e.Queue.Backlog(ctx)
		if err != nil || b.Waiting != 0 || b.OldestAge != 0 {
			t.Fatalf("empty queue: %+v, %v", b, err)
		}
		for range 3 {
			e.placeOrder(t)
		}
		b, err = e.Queue.Backlog(ctx)
		if err != nil || b.Waiting != 3 || b.OldestAge < 0 || b.OldestAge > time.Minute {
			t.Fatalf("after 3 checkouts: %+v, %v; want 3 waiting", b, err)
		}
		for id := range int64(5) {
			if err := e.queue(t).InsertAt(ctx, jobs.OrderPlacedArgs{OrderID: 1000 + id}, time.Now().Add(4*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := e.queue(t).ScheduleAhead(ctx, 5*time.Second); err != nil || n != 5 {
			t.Fatalf("made %d jobs available ahead of time (%v), want 5", n, err)
		}
		b, err = e.Queue.Backlog(ctx)
		if err != nil || b.Waiting != 3 {
			t.Fatalf("with 5 jobs available before they are due: %+v, %v; want the 3 due ones", b, err)
		}
		// "ready" steps wait for their time as available jobs
		if err := e.queue(t).InsertAt(ctx, jobs.OrderReadyArgs{OrderID: 1500}, time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		b, err = e.Queue.Backlog(ctx)
		if err != nil || b.Waiting != 3 {
			t.Fatalf("with a \"ready\" step due in a minute: %+v, %v; want the 3 due jobs", b, err)
		}
		// a job due a minute ago that the scheduler made available late
		// (its age reads a few µs under the minute on SQLite, whose
		// timestamps are rounded: a fresh-clone CI run saw 59.999996 s)
		if err := e.queue(t).InsertAt(ctx, jobs.OrderPlacedArgs{OrderID: 2000}, time.Now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
		if n, err := e.queue(t).ScheduleAhead(ctx, 0); err != nil || n != 1 {
			t.Fatalf("made %d overdue jobs available (%v), want 1", n, err)
		}
		b, err = e.Queue.Backlog(ctx)
		if err != nil || b.Waiting != 4 || b.OldestAge < time.Minute-time.Second || b.OldestAge > 2*time.Minute {
			t.Fatalf("with a job due a minute ago: %+v, %v; want 4 waiting, the oldest for about a minute", b, err)
		}
	})
}
