// Package jobs runs the ordering service's background work on River: the
// confirmation mail and the status changes of an order. Jobs are inserted
// in the checkout's own transaction, so an order and its job commit or roll
// back together; River retries failed jobs with backoff and rescues jobs
// whose worker died.
package jobs

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivershared/uniquestates"
	"github.com/riverqueue/river/rivertype"

	"github.com/perfscale/perfscale/shop"
)

// Store is what the jobs need from storage. The transaction it hands the
// callbacks of ConfirmOrder and MarkOrderReady must be one the queue's
// driver takes (a TTx): the job's own completion and the jobs it schedules
// commit with the store's writes.
type Store interface {
	shop.FulfilmentService
}

// Config tunes the worker.
type Config struct {
	// Work makes this process run jobs; without it the queue only inserts
	// (the api role of a split deployment).
	Work bool
	// MaxWorkers is how many jobs run at once.
	MaxWorkers int
	// PrepTime is how long the kitchen takes from confirmed to ready.
	PrepTime time.Duration
	// MailLatency simulates the mail provider's response time.
	MailLatency time.Duration
	// RescueStuckJobsAfter is how long a job may run before River assumes
	// its worker died and runs it again. The default is sized to the work:
	// the longest per-kind timeout plus a margin (see rescueAfter).
	RescueStuckJobsAfter time.Duration
	// SoleWorker says no other live process works this queue (the caller
	// holds a lock that proves it, as shop/app does on the embedded
	// default). Start then re-enqueues the confirmations that a crashed
	// predecessor left running, instead of waiting for River's leader lease
	// (15 s) and rescuer (every 30 s) to notice them.
	SoleWorker bool
	// Liveness, if set, tells live workers from dead ones (shop/backend
	// sets it on PostgreSQL: an advisory lock each worker holds for its
	// life). A worker then re-enqueues, at start and every
	// LivenessInterval, the confirmations left running by a dead worker,
	// instead of waiting for River's rescuer (up to RescueStuckJobsAfter
	// plus its 30 s period).
	Liveness Liveness
	// PollInterval is how often an idle worker looks for jobs (SQLite has no
	// LISTEN/NOTIFY).
	PollInterval time.Duration
	// FetchCooldown is the least time between two fetches of one worker: a
	// burst of inserts and their notifications is taken in one fetch
	// (default DefaultFetchCooldown, at most PollInterval).
	FetchCooldown time.Duration
	// NoMigrate leaves River's tables to a migration step of their own
	// (`shop migrate`, see Migrate): New only checks they are current, so
	// N replicas starting together do not race to migrate.
	NoMigrate bool
	// AfterMail, if set, runs after the mail provider was called, inside
	// the confirmation's transaction once all its writes are made (mail
	// recorded, order confirmed, "ready" scheduled, job completed) and
	// before it commits: a fault-injection point for crash tests, where a
	// worker killed there has mailed but left nothing committed. It runs
	// with the transaction open (on SQLite, holding the one writer), so it
	// must return at once or never.
	AfterMail func(orderID int64)
	// EventsWritten, if set, is called each time a job finds its order's
	// events committed: as a confirmation starts (the checkout committed
	// the order's "placed" event with the job) and after a confirmation or
	// a "ready" step committed its own. shop/app wakes the outbox relay of
	// this process with it on PostgreSQL, where writing an order event
	// notifies nobody: a notification costs every listening connection of
	// the database a transaction (docs/postgres.md). It must not block.
	EventsWritten func()
	// Maintenance, if set, is the database's upkeep, run daily by the
	// worker (shop/backend sets it on PostgreSQL: the order partitions of
	// the months ahead made, and with a retention the old months dropped).
	Maintenance func(ctx context.Context) error
	Logger      *slog.Logger
}

func (c *Config) defaults() {
	if c.MaxWorkers <= 0 {
		c.MaxWorkers = DefaultMaxWorkers
	}
	if c.PrepTime <= 0 {
		c.PrepTime = 5 * time.Second
	}
	if c.RescueStuckJobsAfter <= 0 {
		c.RescueStuckJobsAfter = c.rescueAfter()
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 200 * time.Millisecond
	}
	if c.FetchCooldown <= 0 {
		c.FetchCooldown = DefaultFetchCooldown
	}
	c.FetchCooldown = min(c.FetchCooldown, c.PollInterval)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.EventsWritten == nil {
		c.EventsWritten = func() {}
	}
}

// Per-kind job timeouts: a confirmation is one mail call plus one short
// transaction; a status change is one short transaction and the pruning
// single statements. They bound a stuck job and tell River's rescuer how
// long a job may look busy before its worker is presumed dead.
const (
	jobWorkTimeout  = 10 * time.Second // store work of one job, above the mail call
	pruneJobTimeout = time.Minute
	rescueMargin    = 5 * time.Second
)

// confirmationTimeout bounds the order_placed job: the mail provider's
// latency plus the store work.
func (c Config) confirmationTimeout() time.Duration { return c.MailLatency + jobWorkTimeout }

// rescueAfter is the longest per-kind timeout of the frequent jobs plus a
// margin: a job running longer than its timeout has either been cancelled
// by its worker or lost with it. The hourly prune job has a longer timeout
// and is rescued on its own timeout (River takes the larger of the two).
func (c Config) rescueAfter() time.Duration {
	return max(c.confirmationTimeout(), jobWorkTimeout) + rescueMargin
}

// DefaultFetchCooldown is the least time between a worker's fetches
// (River's default is 100 ms).
const DefaultFetchCooldown = 50 * time.Millisecond

// Liveness tells whether a worker, by its River client id, is alive.
type Liveness interface {
	// Hold marks the worker id alive until release is called or the
	// process dies.
	Hold(ctx context.Context, id string) (release func(), err error)
	// Dead reports whether worker id holds no mark (it died, or stopped).
	Dead(ctx context.Context, id string) (bool, error)
}

// LivenessInterval is how often a worker with a Liveness looks for the
// confirmations of dead workers.
const LivenessInterval = 5 * time.Second

// DefaultMaxWorkers is how many jobs a worker process runs at once.
const DefaultMaxWorkers = 40

// Queue is a River client over a driver for transactions of type TTx.
type Queue[TTx any] struct {
	client     *river.Client[TTx]
	exec       riverdriver.Executor
	dueJobs    string // the driver's statement for Backlog
	work       bool
	soleWorker bool
	log        *slog.Logger
	// notify wakes the workers for jobs that a store inserts itself
	// (ConfirmationJob); nil where the driver has no LISTEN/NOTIFY.
	notify *notifyLimiter
	// id is this worker's River client id; liveness, if set, tells dead
	// workers, whose jobs this one takes up (stopLiveness ends that).
	id           string
	liveness     Liveness
	stopLiveness func()
}

// New migrates River's tables with driver and returns a queue. The shop's
// own migrations are the store's business; River's are River's.
func New[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], store Store, cfg Config) (*Queue[TTx], error) {
	cfg.defaults()
	if cfg.NoMigrate {
		if err := CheckSchema(ctx, driver); err != nil {
			return nil, err
		}
	} else if err := Migrate(ctx, driver, cfg.Logger); err != nil {
		return nil, err
	}
	rc := &river.Config{
		Logger:               quiet(cfg.Logger),
		RescueStuckJobsAfter: cfg.RescueStuckJobsAfter,
		// Each kind sets its own timeout (the workers' Timeout methods);
		// this is only the fallback, and River wants it within the rescue
		// horizon.
		JobTimeout:        min(jobWorkTimeout, cfg.RescueStuckJobsAfter),
		FetchPollInterval: cfg.PollInterval,
		FetchCooldown:     cfg.FetchCooldown,
	}
	var id string
	if cfg.Work && cfg.Liveness != nil {
		id = workerID()
		rc.ID = id
	}
	if cfg.Work {
		workers := river.NewWorkers()
		river.AddWorker(workers, &orderPlacedWorker[TTx]{store: store, cfg: cfg, driver: driver})
		river.AddWorker(workers, &orderReadyWorker[TTx]{store: store, written: cfg.EventsWritten})
		river.AddWorker(workers, &pruneWorker{store: store, log: cfg.Logger})
		river.AddWorker(workers, &pruneSessionsWorker{store: store, log: cfg.Logger})
		if cfg.Maintenance != nil {
			river.AddWorker(workers, &maintenanceWorker{maintain: cfg.Maintenance})
			// The process ran it as it started (shop/backend); daily is
			// MonthsAhead months of slack.
			rc.PeriodicJobs = append(rc.PeriodicJobs, river.NewPeriodicJob(river.PeriodicInterval(MaintenanceInterval),
				func() (river.JobArgs, *river.InsertOpts) { return MaintenanceArgs{}, nil }, nil))
		}
		rc.Workers = workers
		rc.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.MaxWorkers}}
		rc.PeriodicJobs = append(rc.PeriodicJobs,
			river.NewPeriodicJob(river.PeriodicInterval(time.Hour), func() (river.JobArgs, *river.InsertOpts) {
				return PruneArgs{}, nil
			}, &river.PeriodicJobOpts{RunOnStart: true}),
			river.NewPeriodicJob(river.PeriodicInterval(SessionPruneInterval), func() (river.JobArgs, *river.InsertOpts) {
				return PruneSessionsArgs{}, nil
			}, &river.PeriodicJobOpts{RunOnStart: true}),
		)
	}
	client, err := river.NewClient(driver, rc)
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	due, ok := dueJobs[driver.DatabaseName()]
	if !ok {
		return nil, fmt.Errorf("the job queue does not know how to read the backlog on %s", driver.DatabaseName())
	}
	q := &Queue[TTx]{client: client, exec: driver.GetExecutor(), dueJobs: due, work: cfg.Work, soleWorker: cfg.SoleWorker, log: cfg.Logger,
		id: id, liveness: cfg.Liveness, stopLiveness: func() {}}
	if driver.SupportsListenNotify() {
		q.notify = &notifyLimiter{every: rc.FetchCooldown}
	}
	return q, nil
}

// workerID is a River client id unique to this process's queue: host, pid
// and a random part, so a restarted worker never takes a dead one's id.
func workerID() string {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("shop-%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Migrate brings River's tables up to date.
func Migrate[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: quiet(log)})
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate river tables: %w", err)
	}
	return nil
}

// CheckSchema fails, saying what to run, unless River's tables are current.
func CheckSchema[TTx any](ctx context.Context, driver riverdriver.Driver[TTx]) error {
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	res, err := migrator.Validate(ctx, nil)
	if err != nil {
		return fmt.Errorf("check river tables: %w", err)
	}
	if !res.OK {
		return fmt.Errorf("the job queue's tables are not migrated (run `shop migrate` with the same --db first): %s", strings.Join(res.Messages, "; "))
	}
	return nil
}

// quiet keeps River's routine info logs out of the service's log.
func quiet(l *slog.Logger) *slog.Logger {
	return slog.New(levelFilter{Handler: l.Handler(), min: slog.LevelWarn}).With("component", "river")
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}

func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{Handler: f.Handler.WithAttrs(a), min: f.min}
}

func (f levelFilter) WithGroup(name string) slog.Handler {
	return levelFilter{Handler: f.Handler.WithGroup(name), min: f.min}
}

// EnqueueOrderPlaced inserts the confirmation job in tx, the checkout's
// transaction (shop.ConfirmationQueue).
func (q *Queue[TTx]) EnqueueOrderPlaced(ctx context.Context, tx shop.Tx, orderID int64) error {
	t, err := queueTx[TTx](tx)
	if err != nil {
		return err
	}
	if _, err := q.client.InsertTx(ctx, t, OrderPlacedArgs{OrderID: orderID}, nil); err != nil {
		return fmt.Errorf("insert order_placed job: %w", err)
	}
	return nil
}

// ConfirmationJob is the row River's InsertTx writes for an order's
// confirmation (OrderPlacedArgs, no insert options: River's default queue,
// priority and attempts, available at once, no tags, metadata or unique
// key), for a store that writes it in the checkout's own statement
// (shop.AtOnceQueue). River's insert also wakes the workers of the queue
// with a notification, at most once per fetch cooldown per client; the
// row says when that is due, by the same rule.
func (q *Queue[TTx]) ConfirmationJob() shop.JobRow {
	row := ConfirmationRow()
	if q.notify != nil && q.notify.due(time.Now()) {
		// River's insert topic and payload (client.go, maybeNotifyInsertForQueues).
		row.NotifyTopic, row.NotifyPayload = "river_insert", fmt.Sprintf("{\"queue\": %q}", row.Queue)
	}
	return row
}

// ConfirmationRow is the confirmation job's row without the insert
// notification, which only a queue (ConfirmationJob) knows is due.
func ConfirmationRow() shop.JobRow {
	return shop.JobRow{
		Kind:        OrderPlacedArgs{}.Kind(),
		ArgName:     "order_id",
		Queue:       river.QueueDefault,
		Priority:    river.PriorityDefault,
		MaxAttempts: river.MaxAttemptsDefault,
	}
}

// notifyLimiter lets one notification through per interval, as River's
// own insert limiter does per queue.
type notifyLimiter struct {
	every time.Duration
	last  atomic.Int64 // unix nanoseconds of the last one let through
}

func (l *notifyLimiter) due(now time.Time) bool {
	last := l.last.Load()
	if now.UnixNano()-last < int64(l.every) {
		return false
	}
	return l.last.CompareAndSwap(last, now.UnixNano())
}

// Start starts working jobs when the queue was made to work; otherwise it
// does nothing. Cancelling ctx does not stop the worker: River treats a
// cancelled start context as the abrupt stop that cancels running jobs, so
// the worker runs on a context without ctx's cancellation and stops only
// through Stop, which lets running jobs finish.
func (q *Queue[TTx]) Start(ctx context.Context) error {
	if !q.work {
		return nil
	}
	if q.soleWorker {
		if err := q.requeueOrphans(ctx, nil); err != nil {
			return err
		}
	}
	if q.liveness != nil {
		if err := q.watchLiveness(ctx); err != nil {
			return err
		}
	}
	if err := q.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	return nil
}

// watchLiveness marks this worker alive, takes up the dead workers'
// confirmations once, and then every LivenessInterval until Stop.
func (q *Queue[TTx]) watchLiveness(ctx context.Context) error {
	release, err := q.liveness.Hold(ctx, q.id)
	if err != nil {
		return fmt.Errorf("mark the worker alive: %w", err)
	}
	taken := map[int64]bool{} // orphans this worker re-enqueued already
	dead := func(ctx context.Context, job *rivertype.JobRow) (bool, error) {
		if taken[job.ID] || len(job.AttemptedBy) == 0 {
			return false, nil
		}
		owner := job.AttemptedBy[len(job.AttemptedBy)-1]
		if owner == q.id {
			return false, nil
		}
		d, err := q.liveness.Dead(ctx, owner)
		if d {
			taken[job.ID] = true
		}
		return d, err
	}
	if err := q.requeueOrphans(ctx, dead); err != nil {
		release()
		return err
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(LivenessInterval)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				if err := q.requeueOrphans(wctx, dead); err != nil && wctx.Err() == nil {
					q.log.WarnContext(wctx, "looking for dead workers' jobs", "error", err.Error())
				}
			}
		}
	}()
	q.stopLiveness = func() { stop(); <-done; release() }
	return nil
}

// requeueOrphans enqueues again every confirmation that is marked running
// although its worker is dead: every one when orphaned is nil (no worker
// is alive: the caller vouches for that with Config.SoleWorker), else
// those orphaned says. The process that ran it was killed. The
// confirmation is idempotent (one mail per order, the status moves once),
// so the orphan, once River's rescuer retries it, only finds the work done.
func (q *Queue[TTx]) requeueOrphans(ctx context.Context, orphaned func(context.Context, *rivertype.JobRow) (bool, error)) error {
	params := river.NewJobListParams().States(rivertype.JobStateRunning).Kinds(OrderPlacedArgs{}.Kind()).First(10000)
	for {
		res, err := q.client.JobList(ctx, params)
		if err != nil {
			return fmt.Errorf("list orphaned jobs: %w", err)
		}
		for _, job := range res.Jobs {
			if orphaned != nil {
				if ok, err := orphaned(ctx, job); err != nil || !ok {
					if err != nil {
						return fmt.Errorf("is job %d's worker alive: %w", job.ID, err)
					}
					continue
				}
			}
			var args OrderPlacedArgs
			if err := json.Unmarshal(job.EncodedArgs, &args); err != nil {
				return fmt.Errorf("orphaned job %d: %w", job.ID, err)
			}
			if _, err := q.client.Insert(ctx, args, nil); err != nil {
				return fmt.Errorf("re-enqueue order %d: %w", args.OrderID, err)
			}
			q.log.InfoContext(ctx, "re-enqueued a confirmation left running by a stopped worker", "order_id", args.OrderID, "job_id", job.ID)
		}
		if res.LastCursor == nil || len(res.Jobs) == 0 {
			return nil
		}
		params = params.After(res.LastCursor)
	}
}

// Backlog is the work waiting in the queue.
type Backlog struct {
	// Waiting is how many jobs are due to run and not yet taken.
	Waiting int
	// OldestAge is how long the oldest of them has been due (0: none).
	OldestAge time.Duration
}

// dueJobs counts the available jobs whose time has come and says how
// many seconds the oldest has been due, in each driver's dialect (River's
// own fetch compares scheduled_at with the same clock). The state alone
// is not enough: River's scheduler moves a scheduled job to "available" up
// to its interval (5 s) ahead of its time, so at a few hundred checkouts a
// second about a thousand "ready" steps sit there not yet due, and the
// embedded default refused checkouts at 16 users on a quiet machine while
// its worker kept up.
var dueJobs = map[string]string{
	riverdriver.DatabaseNamePostgres: `SELECT count(*), coalesce(extract(epoch FROM now() - min(scheduled_at)), 0)::float8
FROM river_job WHERE state = 'available' AND scheduled_at <= now()`,
	riverdriver.DatabaseNameSQLite: `SELECT count(*), coalesce((julianday('now') - julianday(min(scheduled_at))) * 86400.0, 0)
FROM river_job WHERE state = 'available' AND scheduled_at <= datetime('now', 'subsec')`,
}

// Backlog reads the queue's waiting work in one statement over River's
// index of available jobs, so its cost grows with the backlog only, not
// with the job table. Any role can ask, the api role included.
func (q *Queue[TTx]) Backlog(ctx context.Context) (Backlog, error) {
	var (
		n   int
		age float64
	)
	if err := q.exec.QueryRow(ctx, q.dueJobs).Scan(&n, &age); err != nil {
		return Backlog{}, fmt.Errorf("count waiting jobs: %w", err)
	}
	return Backlog{Waiting: n, OldestAge: max(0, time.Duration(age*float64(time.Second)))}, nil
}

// Stop lets running jobs finish until ctx ends, then cancels them and
// waits a little longer for them to return.
func (q *Queue[TTx]) Stop(ctx context.Context) error {
	if !q.work {
		return nil
	}
	defer q.stopLiveness()
	err := q.client.Stop(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		q.log.WarnContext(ctx, "running jobs did not finish in time; cancelling them")
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err = q.client.StopAndCancel(cctx)
	}
	if err != nil {
		return fmt.Errorf("stop worker: %w", err)
	}
	return nil
}

// OrderPlacedArgs: send the confirmation of a new order and confirm it.
type OrderPlacedArgs struct {
	OrderID int64 `json:"order_id"`
}

// Kind names the job in River's table.
func (OrderPlacedArgs) Kind() string { return "order_placed" }

// OrderReadyArgs: the kitchen is done with an order.
type OrderReadyArgs struct {
	OrderID int64 `json:"order_id"`
}

// Kind names the job in River's table.
func (OrderReadyArgs) Kind() string { return "order_ready" }

// SessionPruneInterval is how often expired sessions are deleted. Sessions
// live 30 days, so an hour's delay costs nothing, while a flood of
// abandoned sessions (limited per client by the API) is cleared as soon as
// it expires.
const SessionPruneInterval = time.Hour

// PruneSessionsArgs: delete sessions past their expiry, and their carts.
type PruneSessionsArgs struct{}

// Kind names the job in River's table.
func (PruneSessionsArgs) Kind() string { return "prune_sessions" }

// MaintenanceInterval is how often the worker runs Config.Maintenance.
const MaintenanceInterval = 24 * time.Hour

// MaintenanceArgs: the database's daily upkeep (Config.Maintenance).
type MaintenanceArgs struct{}

// Kind names the job in River's table.
func (MaintenanceArgs) Kind() string { return "maintain_database" }

type maintenanceWorker struct {
	river.WorkerDefaults[MaintenanceArgs]
	maintain func(ctx context.Context) error
}

// Timeout bounds one run.
func (w *maintenanceWorker) Timeout(*river.Job[MaintenanceArgs]) time.Duration {
	return pruneJobTimeout
}

func (w *maintenanceWorker) Work(ctx context.Context, _ *river.Job[MaintenanceArgs]) error {
	return w.maintain(ctx)
}

// PruneArgs: forget idempotency keys past their retention.
type PruneArgs struct{}

// Kind names the job in River's table.
func (PruneArgs) Kind() string { return "prune_idempotency_keys" }

type orderPlacedWorker[TTx any] struct {
	river.WorkerDefaults[OrderPlacedArgs]
	store Store
	cfg   Config
	// driver moves the "ready" step it schedules (waitAvailable).
	driver riverdriver.Driver[TTx]
}

// Timeout bounds one confirmation: the mail call and the store work.
func (w *orderPlacedWorker[TTx]) Timeout(*river.Job[OrderPlacedArgs]) time.Duration {
	return w.cfg.confirmationTimeout()
}

// Work confirms the order in one transaction of the store's: the order
// read, the mail recorded, the status moved with its event, the "ready"
// step scheduled and this job completed. That is one commit of its own
// beside River's fetch (it used to take a read before the mail and three
// commits: mail, status, "ready" job). Where the store can
// (ConfirmOrderAtOnce: PostgreSQL) the store writes the "ready" step and
// the completion itself, in two round trips; elsewhere River's own calls
// do it in the store's transaction. With a mail provider's latency
// (MailLatency) the provider is called first, with the order read for it,
// before the transaction begins, so its latency never holds the database
// (on SQLite, the one writer that requests share).
//
// Work is safe to run more than once for one order: the mail sink keeps
// one mail per order, the status only moves if it is still "placed", and
// "ready" is unique per order. A retry that finds the order confirmed
// (its first run committed, then the worker died before River heard) still
// schedules "ready", as a no-op, and completes this job.
func (w *orderPlacedWorker[TTx]) Work(ctx context.Context, job *river.Job[OrderPlacedArgs]) error {
	id := job.Args.OrderID
	// The job was inserted with the order's "placed" event: it is there
	// for the relay now, not after the mail.
	w.cfg.EventsWritten()
	mail := ConfirmationMail
	if w.cfg.MailLatency > 0 {
		o, err := w.store.OrderByID(ctx, id)
		if shop.ErrorCode(err) == shop.ENOTFOUND {
			return river.JobCancel(fmt.Errorf("order %d is gone", id))
		}
		if err != nil {
			return err
		}
		// An order past "placed" was mailed in the transaction that confirmed it.
		if o.Status == shop.StatusPlaced {
			select {
			case <-time.After(w.cfg.MailLatency):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		mail = func(*shop.Order) shop.Mail { return ConfirmationMail(o) }
	}
	mailed, err := w.confirm(ctx, job, mail)
	if shop.ErrorCode(err) == shop.ENOTFOUND {
		return river.JobCancel(fmt.Errorf("order %d is gone", id))
	}
	if err != nil {
		return err
	}
	w.cfg.EventsWritten()
	w.cfg.Logger.InfoContext(ctx, "order confirmation", "order_id", id, "mailed", mailed, "attempt", job.Attempt)
	return nil
}

// confirm is the confirmation's transaction: the store's at once where it
// can, else ConfirmOrder with River's calls in it. AfterMail runs with the
// writes made, before the commit, when the order moved.
func (w *orderPlacedWorker[TTx]) confirm(ctx context.Context, job *river.Job[OrderPlacedArgs], mail func(*shop.Order) shop.Mail) (bool, error) {
	id := job.Args.OrderID
	due := time.Now().Add(w.cfg.PrepTime)
	next, err := readyRow(id, due)
	if err != nil {
		return false, err
	}
	c := shop.ConfirmAtOnce{OrderID: id, Mail: mail, Next: next, Done: shop.JobDone{ID: job.ID, At: time.Now()}}
	if after := w.cfg.AfterMail; after != nil {
		c.BeforeCommit = func(moved bool) {
			if moved {
				after(id)
			}
		}
	}
	done, err := w.store.ConfirmOrderAtOnce(ctx, c)
	if done.Handled || err != nil {
		return done.Mailed, err
	}
	sending := false // the store wrote the mail: the order moved to confirmed
	compose := func(o *shop.Order) shop.Mail { sending = true; return mail(o) }
	return w.store.ConfirmOrder(ctx, id, compose, func(ctx context.Context, stx shop.Tx) error {
		tx, err := queueTx[TTx](stx)
		if err != nil {
			return err
		}
		if err := w.scheduleReadyAndComplete(ctx, tx, job, due); err != nil {
			return err
		}
		if sending && w.cfg.AfterMail != nil {
			w.cfg.AfterMail(id)
		}
		return nil
	})
}

// scheduleReadyAndComplete schedules the order's "ready" step due at due
// and completes the confirmation's job by River's own calls, in the
// confirmation's transaction tx (a store that writes them itself,
// ConfirmOrderAtOnce, does not get here).
func (w *orderPlacedWorker[TTx]) scheduleReadyAndComplete(ctx context.Context, tx TTx, job *river.Job[OrderPlacedArgs], due time.Time) error {
	id := job.Args.OrderID
	client := river.ClientFromContext[TTx](ctx)
	ready, err := client.InsertTx(ctx, tx, OrderReadyArgs{OrderID: id}, readyOpts(due))
	if err != nil {
		return fmt.Errorf("schedule order %d ready: %w", id, err)
	}
	if err := waitAvailable(ctx, w.driver.UnwrapExecutor(tx), ready); err != nil {
		return fmt.Errorf("schedule order %d ready: %w", id, err)
	}
	return completeTx(ctx, tx, job)
}

// readyOpts are the "ready" step's insert options: due at its time, and
// unique by order, so a confirmation run twice schedules one step.
func readyOpts(due time.Time) *river.InsertOpts {
	return &river.InsertOpts{ScheduledAt: due, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// readyRow is the row River's insert of the order's "ready" step writes
// (OrderReadyArgs, readyOpts: River's default queue, priority and
// attempts, its unique key and states), for a store that writes it itself
// (ConfirmOrderAtOnce), directly as "available" (waitAvailable says why).
// TestReadyStepAtOnceIsRiversRow compares the row with River's own; a
// River upgrade that changes its insert shows there.
func readyRow(orderID int64, due time.Time) (shop.UniqueJobRow, error) {
	args, err := json.Marshal(OrderReadyArgs{OrderID: orderID})
	if err != nil {
		return shop.UniqueJobRow{}, err
	}
	return shop.UniqueJobRow{Kind: OrderReadyArgs{}.Kind(), Args: args, Queue: river.QueueDefault,
		Priority: river.PriorityDefault, MaxAttempts: river.MaxAttemptsDefault, ScheduledAt: due,
		UniqueKey: readyUniqueKey(args), UniqueStates: readyUniqueStates}, nil
}

// readyUniqueKey is River's unique key of a "ready" step (dbunique's
// UniqueKey for UniqueOpts{ByArgs: true}): the hash of its kind and its
// arguments, whose one key needs no sorting.
func readyUniqueKey(encodedArgs []byte) []byte {
	key := sha256.Sum256([]byte("&kind=" + OrderReadyArgs{}.Kind() + "&args=" + string(encodedArgs)))
	return key[:]
}

// readyUniqueStates are River's default unique states as its bitmask.
var readyUniqueStates = uniquestates.UniqueStatesToBitmask(rivertype.UniqueOptsByStateDefault())

// waitAvailable makes a "ready" step just inserted as "scheduled" wait for
// its time as "available", in the confirmation's transaction: River's
// fetch takes an available job only once its scheduled_at has come (its
// scheduler itself makes jobs available up to its 5 s interval ahead of
// their time), so the step still runs when due, at the next fetch or poll.
// A scheduled job goes through River's scheduler, whose statement
// (JobSchedule) checks each job it moves against each other one's unique
// key: its work grows with the square of the steps due in one of its 5 s
// passes, every confirmation's at the journey's rates (docs/postgres.md:
// 361,800 rows read to move 600). The step is inserted as scheduled and
// then moved, rather than inserted available, because River notifies the
// queue's listeners of an available job's insert, and each notification
// costs every listening connection of the database a transaction. The
// unique key stays, so a confirmation run twice schedules one step: a
// duplicate is left as it is.
func waitAvailable(ctx context.Context, exec riverdriver.Executor, ready *rivertype.JobInsertResult) error {
	if ready.UniqueSkippedAsDuplicate || ready.Job.State != rivertype.JobStateScheduled {
		return nil
	}
	_, err := exec.JobUpdateFull(ctx, &riverdriver.JobUpdateFullParams{ID: ready.Job.ID, StateDoUpdate: true, State: rivertype.JobStateAvailable})
	return err
}

// queueTx is the store's transaction as the queue's driver takes it.
// shop/backend builds each store with a queue over the same database and
// driver, so a mismatch is a wiring mistake, reported rather than panicked.
func queueTx[TTx any](tx shop.Tx) (TTx, error) {
	t, ok := tx.(TTx)
	if !ok {
		return t, fmt.Errorf("the store's transaction is a %T; the job queue's driver takes a %v", tx, reflect.TypeFor[TTx]())
	}
	return t, nil
}

// completeTx marks the running job completed in tx, so the job ends
// exactly when its work commits: a worker that dies before the commit
// leaves the job running, for River to rescue and run again. River's
// JobCompleteTx names the driver type only to infer TTx (it takes the
// driver from the client in ctx), so the driver interface stands in for
// the concrete driver, which this generic code does not know.
func completeTx[TTx any, TArgs river.JobArgs](ctx context.Context, tx TTx, job *river.Job[TArgs]) error {
	if _, err := river.JobCompleteTx[riverdriver.Driver[TTx]](ctx, tx, job); err != nil {
		return fmt.Errorf("complete %s job %d: %w", job.Kind, job.ID, err)
	}
	return nil
}

// ConfirmationMail is the mail a customer gets for an order.
func ConfirmationMail(o *shop.Order) shop.Mail {
	return shop.Mail{
		OrderID: o.ID,
		To:      o.Email,
		Subject: fmt.Sprintf("Order %d confirmed", o.ID),
		Body: fmt.Sprintf("Hello %s,\n\nwe have your order %d (%d items, %d.%02d) and will tell you when it is ready.\n",
			o.CustomerName, o.ID, len(o.Lines), o.TotalCents/100, o.TotalCents%100),
	}
}

type orderReadyWorker[TTx any] struct {
	river.WorkerDefaults[OrderReadyArgs]
	store   Store
	written func() // Config.EventsWritten
}

// Timeout bounds one status change.
func (w *orderReadyWorker[TTx]) Timeout(*river.Job[OrderReadyArgs]) time.Duration {
	return jobWorkTimeout
}

// Work moves the order to ready and completes this job together: in one
// statement where the store can (MarkOrderReadyAtOnce: PostgreSQL, one
// round trip and its commit), else in one transaction of the store's with
// River's JobCompleteTx. A retry finds the order ready already and only
// completes the job.
func (w *orderReadyWorker[TTx]) Work(ctx context.Context, job *river.Job[OrderReadyArgs]) error {
	handled, err := w.store.MarkOrderReadyAtOnce(ctx, job.Args.OrderID, shop.JobDone{ID: job.ID, At: time.Now()})
	if err == nil && !handled {
		_, err = w.store.MarkOrderReady(ctx, job.Args.OrderID, func(ctx context.Context, stx shop.Tx) error {
			tx, err := queueTx[TTx](stx)
			if err != nil {
				return err
			}
			return completeTx(ctx, tx, job)
		})
	}
	if err == nil {
		w.written()
	}
	return err
}

type pruneWorker struct {
	river.WorkerDefaults[PruneArgs]
	store Store
	log   *slog.Logger
}

// Timeout bounds one pruning run.
func (w *pruneWorker) Timeout(*river.Job[PruneArgs]) time.Duration { return pruneJobTimeout }

func (w *pruneWorker) Work(ctx context.Context, _ *river.Job[PruneArgs]) error {
	n, err := w.store.PruneIdempotencyKeys(ctx)
	if err == nil && n > 0 {
		w.log.InfoContext(ctx, "pruned idempotency keys", "count", n)
	}
	return err
}

type pruneSessionsWorker struct {
	river.WorkerDefaults[PruneSessionsArgs]
	store Store
	log   *slog.Logger
}

// Timeout bounds one pruning run.
func (w *pruneSessionsWorker) Timeout(*river.Job[PruneSessionsArgs]) time.Duration {
	return pruneJobTimeout
}

func (w *pruneSessionsWorker) Work(ctx context.Context, _ *river.Job[PruneSessionsArgs]) error {
	n, err := w.store.PruneSessions(ctx)
	if err == nil && n > 0 {
		w.log.InfoContext(ctx, "pruned expired sessions", "count", n)
	}
	return err
}
