package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
)

// An api process with no worker and a confirmation due a minute ago:
// with the default --checkout-backpressure on, checkout is refused (503,
// the backlog named); off, it is not, and the process warned at start that
// it runs no such refusal (so none can come a sampling period later).
// scripts/bench-pgcheckout.sh runs
// exactly such a process (no worker on either side of its comparison)
// and failed its first round before it could say off.
func TestCheckoutBackpressureOffLetsCheckoutsPastABacklog(t *testing.T) {
	tests := []struct {
		setting string
		refused bool
	}{
		{"on", true},
		{"off", false},
	}
	for _, tt := range tests {
		t.Run(tt.setting, func(t *testing.T) {
			dir := t.TempDir()
			s := start(t, dir, "--role", "api", "--checkout-backpressure", tt.setting)
			_, body := call(t, "POST", s.api+"/v1/sessions", "", "", "")
			var sess struct{ Token string }
			json.Unmarshal(body, &sess)
			checkout := func(n int) (int, []byte) {
				call(t, "PUT", s.api+"/v1/cart/items/1", sess.Token, "", `{"quantity": 1}`)
				return call(t, "POST", s.api+"/v1/orders", sess.Token, fmt.Sprintf("k%d", n), `{"customer_name": "Ada", "email": "ada@example.com"}`)
			}
			if code, body := checkout(0); code != 201 {
				t.Fatalf("first checkout, nothing waiting: %d %s", code, body)
			}
			// Its confirmation (no worker takes it) made a minute overdue.
			db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.db")+"?_pragma=busy_timeout(10000)")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if res, err := db.Exec(`UPDATE river_job SET scheduled_at = datetime('now', '-1 minute') WHERE state = 'available'`); err != nil {
				t.Fatal(err)
			} else if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("%d confirmations waiting, want the first checkout's", n)
			}
			// The process reads the backlog as overdue (its /metrics read
			// it with the query the backpressure samples with, which
			// samples at start and every 250 ms).
			oldest := regexp.MustCompile(`(?m)^shop_jobs_oldest_waiting_seconds (\S+)$`)
			testwait.Eventually(t, 20*time.Second, func() error {
				_, body := call(t, "GET", s.admin+"/metrics", "", "", "")
				m := oldest.FindSubmatch(body)
				if m == nil {
					return fmt.Errorf("no shop_jobs_oldest_waiting_seconds in /metrics")
				}
				if age, _ := strconv.ParseFloat(string(m[1]), 64); age < 30 {
					return fmt.Errorf("the oldest confirmation has waited %.1f s", age)
				}
				return nil
			})
			warned := strings.Contains(s.logs.String(), `"msg":"checkout backpressure is off`)
			if warned == tt.refused {
				t.Fatalf("warned that checkout backpressure is off: %v, with %s; the log:\n%s", warned, tt.setting, s.logs.String())
			}
			n := 1
			if tt.refused {
				testwait.Eventually(t, 20*time.Second, func() error {
					n++
					code, body := checkout(n)
					if code != 503 || !regexp.MustCompile(`being confirmed more slowly than they are placed`).Match(body) {
						return fmt.Errorf("checkout with a confirmation a minute overdue: %d %s", code, body)
					}
					return nil
				})
				return
			}
			for range 5 {
				n++
				if code, body := checkout(n); code != 201 {
					t.Fatalf("checkout %d with --checkout-backpressure off and a confirmation a minute overdue: %d %s", n, code, body)
				}
			}
		})
	}
}
