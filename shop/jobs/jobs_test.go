package jobs_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlite"
)

type env struct {
	*backend.Backend
	db *sqlite.DB
}

// open opens the shop database at path with a queue configured by cfg.
func open(t *testing.T, path string, cfg jobs.Config) *env {
	t.Helper()
	ctx := context.Background()
	b, err := backend.Open(ctx, backend.Config{SQLitePath: path, Jobs: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Seed(ctx, seed.Items(5)); err != nil {
		t.Fatal(err)
	}
	return &env{Backend: b, db: b.SQLite}
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
	o, _, err := e.Orders.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "k", Checkout: c})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// waitForStatus waits until the order has reached want or gone past it.
func waitForStatus(t *testing.T, s shop.Store, id int64, want shop.Status, within time.Duration) {
	t.Helper()
	rank := map[shop.Status]int{shop.StatusPlaced: 0, shop.StatusConfirmed: 1, shop.StatusReady: 2}
	deadline := time.Now().Add(within)
	for {
		o, err := s.OrderByID(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if rank[o.Status] >= rank[want] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %d is %q after %v, want %q", id, o.Status, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countJobs(t *testing.T, db *sqlite.DB, kind string) int {
	t.Helper()
	var n int
	if err := db.WriteDB().QueryRow(`SELECT COUNT(*) FROM river_job WHERE kind = ?`, kind).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func fast() jobs.Config {
	return jobs.Config{Work: true, PrepTime: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond}
}

func TestOrderGoesFromPlacedToReadyWithOneMail(t *testing.T) {
	e := open(t, filepath.Join(t.TempDir(), "shop.db"), fast())
	o := e.placeOrder(t)
	if countJobs(t, e.db, "order_placed") != 1 {
		t.Fatal("checkout did not enqueue its job")
	}
	e.start(t)
	waitForStatus(t, e.Store, o.ID, shop.StatusReady, 15*time.Second)
	mails, err := e.Store.Mails(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(mails) != 1 || mails[0].OrderID != o.ID || mails[0].To != "grace@example.com" {
		t.Fatalf("mails = %+v, want one to grace@example.com for order %d", mails, o.ID)
	}
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
	_, _, err := e.Orders.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "k", Checkout: c})
	var oos *shop.OutOfStockError
	if !errors.As(err, &oos) {
		t.Fatalf("err = %v, want out of stock", err)
	}
	if n := countJobs(t, e.db, "order_placed"); n != 0 {
		t.Fatalf("a rolled-back checkout left %d jobs", n)
	}
}

func TestRecordMailIsOncePerOrder(t *testing.T) {
	e := open(t, filepath.Join(t.TempDir(), "shop.db"), jobs.Config{})
	o := e.placeOrder(t)
	ctx := context.Background()
	for i, want := range []bool{true, false} {
		sent, err := e.Store.RecordMail(ctx, jobs.ConfirmationMail(o))
		if err != nil || sent != want {
			t.Fatalf("record %d: sent %v err %v, want %v", i, sent, err, want)
		}
	}
}

// The crash test runs the worker in a child process (this test binary,
// re-executed) that records the confirmation mail and then stops dead, as
// if the machine lost power between mailing and confirming. After a
// restart River rescues the job, and the order is confirmed and mailed
// exactly once.
const childDBEnv = "SHOP_JOBS_CRASH_CHILD_DB"

func TestMain(m *testing.M) {
	if path := os.Getenv(childDBEnv); path != "" {
		os.Exit(crashChild(path))
	}
	os.Exit(m.Run())
}

func crashChild(path string) int {
	ctx := context.Background()
	cfg := fast()
	cfg.SoleWorker = true
	cfg.AfterMail = func(int64) {
		// Tell the parent, then hang until killed.
		os.WriteFile(path+".mailed", nil, 0o600)
		select {}
	}
	b, err := backend.Open(ctx, backend.Config{SQLitePath: path, Jobs: cfg})
	if err != nil {
		return 3
	}
	q := b.Queue
	if err := q.Start(ctx); err != nil {
		return 4
	}
	select {}
}

func TestKilledMidJobConfirmsExactlyOnceAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test restarts a worker; skipped with -short")
	}
	path := filepath.Join(t.TempDir(), "shop.db")
	setup := open(t, path, jobs.Config{}) // insert-only: nothing runs yet
	o := setup.placeOrder(t)
	setup.Close()

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childDBEnv+"="+path)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path + ".mailed"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker did not reach the mail within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()

	// The restart uses the default rescue settings: what brings the order
	// back is the sole worker re-enqueueing the orphan at start, not a
	// rescue horizon shortened for the test.
	cfg := fast()
	cfg.SoleWorker = true
	e := open(t, path, cfg)
	before, err := e.Store.OrderByID(context.Background(), o.ID)
	if err != nil {
		t.Fatal(err)
	}
	mails, _ := e.Store.Mails(context.Background())
	if before.Status != shop.StatusPlaced || len(mails) != 1 {
		t.Fatalf("after the crash: status %q, %d mails; want placed and 1", before.Status, len(mails))
	}
	e.start(t)
	waitForStatus(t, e.Store, o.ID, shop.StatusReady, 60*time.Second)
	mails, err = e.Store.Mails(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(mails) != 1 {
		t.Fatalf("%d mails after the restart, want exactly 1", len(mails))
	}
	if n := countJobs(t, e.db, "order_placed"); n < 2 {
		t.Fatalf("%d order_placed jobs; the restart did not re-enqueue the orphan", n)
	}
}
