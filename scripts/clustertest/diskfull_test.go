package clustertest

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the embedded default's database, read by the checker

	"github.com/perfscale/perfscale/internal/testserver"
	"github.com/perfscale/perfscale/internal/testwait"
)

// The fault matrix's last row: the embedded default (one process, SQLite)
// with its data directory on a 64 MiB tmpfs, a checkout storm, and the
// disk filled to the last byte for 10 s (a file written until ENOSPC),
// then freed. The checker reads the SQLite file: every acknowledged order
// exactly once and no other, stock before = stock left + ordered, every
// order ready with one mail and one "confirmed" event. Gated like the
// matrix: PERFSCALE_FAULTS=all or a list naming "disk full"; needs root
// (it mounts the tmpfs).
func TestDiskFullOnTheEmbeddedDefault(t *testing.T) {
	which := os.Getenv("PERFSCALE_FAULTS")
	if which != "all" && !strings.Contains(which, "disk full") {
		t.Skip("runs with PERFSCALE_FAULTS=all or a list naming \"disk full\" (scripts/faults.sh)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64m"); err != nil {
		t.Skipf("cannot mount a tmpfs (root is needed): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	shop, _ := build(t, repoRoot(t))
	port := testserver.FreePort(t)
	logFile := filepath.Join(t.TempDir(), "shop.log")
	cmd := exec.Command(shop, "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", filepath.Join(dir, "data"),
		"--prep-time", "300ms", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "SHOP_ADMIN_TOKEN="+adminToken)
	logs, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	cmd.Stdout, cmd.Stderr = logs, logs
	proc := testserver.Start(t, cmd, port, logFile)
	t.Cleanup(func() { proc.Stop(syscall.SIGTERM) })
	c := &cluster{t: t, url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	testwait.Eventually(t, 30*time.Second, func() error {
		r, err := c.do("GET", "/readyz", "", "", nil)
		if err != nil || r.status != 200 {
			return fmt.Errorf("readyz: %v %d", err, r.status)
		}
		return nil
	})
	const scarce, items, scarceQty = 3, 8, 40
	for id := 1; id <= items; id++ {
		stock := 100000
		if id <= scarce {
			stock = scarceQty
		}
		c.must("PUT", fmt.Sprintf("/v1/admin/items/%d", id), adminToken, map[string]int{"stock": stock}, 200)
	}
	dbPath := filepath.Join(dir, "data", "shop.db")
	initial := sqliteStock(t, dbPath)

	var obs observations
	s := newObservedStorm(c, 6, items, obs.add)
	defer s.stop()
	s.underWay(t, stormUnderWay)
	filler := filepath.Join(dir, "filler")
	row := runFault(t, fault{name: "disk full (embedded default)", hold: 10 * time.Second,
		inject: func() { fillDisk(t, filler) },
		heal: func() {
			if err := os.Remove(filler); err != nil {
				t.Error(err)
			}
		}}, &obs)
	t.Logf("%s", row)
	s.stop()
	if err := s.failed(); err != nil {
		t.Fatal(err)
	}
	checkSQLite(t, dbPath, initial, s.orders())
	table := faultTable([]faultRow{row}, s, 1, !t.Failed())
	t.Logf("\n%s", table)
	appendTable(t, table)
	if b, err := os.ReadFile(logFile); err == nil {
		t.Logf("the shop's log while the disk was full (last 2 KB):\n%s", tail(b, 2048))
	}
}

// fillDisk writes path until the file system is full.
func fillDisk(t *testing.T, path string) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 64<<10)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("filling the disk: %v", err)
			}
			break
		}
	}
	small := make([]byte, 512)
	for {
		if _, err := f.Write(small); err != nil {
			return
		}
	}
}

func sqliteQuery(t *testing.T, path, query string) [][]int64 {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]int64
	for rows.Next() {
		row := make([]int64, len(cols))
		ptrs := make([]any, len(cols))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func sqliteStock(t *testing.T, path string) map[int64]int64 {
	out := map[int64]int64{}
	for _, r := range sqliteQuery(t, path, "SELECT id, stock FROM items") {
		out[r[0]] = r[1]
	}
	return out
}

// checkSQLite is checkShards on the embedded default's database.
func checkSQLite(t *testing.T, path string, initial map[int64]int64, acked map[string]int64) {
	t.Helper()
	testwait.Eventually(t, 120*time.Second, func() error {
		if n := sqliteQuery(t, path, "SELECT count(*) FROM orders WHERE status <> 'ready'")[0][0]; n > 0 {
			return fmt.Errorf("%d orders not ready yet", n)
		}
		return nil
	})
	stored := map[int64]bool{}
	for _, r := range sqliteQuery(t, path, "SELECT id FROM orders") {
		stored[r[0]] = true
	}
	ackedIDs := map[int64]string{}
	for key, id := range acked {
		if other, dup := ackedIDs[id]; dup {
			t.Errorf("order %d was acknowledged for two keys, %s and %s", id, other, key)
		}
		ackedIDs[id] = key
		if !stored[id] {
			t.Errorf("acknowledged order %d (%s) is not stored", id, key)
		}
	}
	for id := range stored {
		if _, ok := ackedIDs[id]; !ok {
			t.Errorf("order %d is stored but was never acknowledged", id)
		}
	}
	ordered := map[int64]int64{}
	for _, r := range sqliteQuery(t, path, "SELECT item_id, sum(quantity) FROM order_lines GROUP BY item_id") {
		ordered[r[0]] = r[1]
	}
	left := sqliteStock(t, path)
	for item, before := range initial {
		if left[item]+ordered[item] != before {
			t.Errorf("item %d: %d before, %d left + %d ordered", item, before, left[item], ordered[item])
		}
	}
	for _, r := range sqliteQuery(t, path, `SELECT o.id,
		(SELECT count(*) FROM mail_outbox m WHERE m.order_id = o.id),
		(SELECT count(*) FROM order_events e WHERE e.order_id = o.id AND e.status = 'confirmed')
		FROM orders o`) {
		if r[1] != 1 || r[2] != 1 {
			t.Errorf("order %d has %d mails and %d confirmed events, want one of each", r[0], r[1], r[2])
		}
	}
	t.Logf("checked %d orders: each acknowledged order stored once, stock exact for %d items, each confirmed once", len(stored), len(initial))
}
