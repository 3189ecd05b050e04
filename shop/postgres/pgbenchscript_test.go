package postgres_test

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// pgbenchScript is pgbench's side of scripts/bench-pgcheckout.sh.
const pgbenchScript = "../../scripts/pgbench-checkout.sql"

// scriptStatements are the SQL statements of a pgbench script: comments
// and meta-commands (lines starting with a backslash) left out, split at
// the semicolons that end lines.
func scriptStatements(text string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") || strings.HasPrefix(t, `\`) {
			continue
		}
		cur.WriteString(line + "\n")
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	return out
}

var spaces = regexp.MustCompile(`\s+`)

// normalised is a statement with its white space one space, lower case
// and request hashes (a hash of the request's body) named alike.
func normalised(sql string) string {
	sql = regexp.MustCompile(`'[0-9a-f]{64}'`).ReplaceAllString(sql, "'<request hash>'")
	return strings.ToLower(strings.TrimSpace(spaces.ReplaceAllString(sql, " ")))
}

// asScript writes a statement the store sent as the script writes it: its
// parameters replaced by the script's variables where the value is one of
// them, and by literals otherwise.
func asScript(sql string, args []any, vars map[any]string) string {
	for k := len(args); k >= 1; k-- { // $10 before $1
		var v string
		a := args[k-1]
		if name, ok := vars[a]; ok {
			v = name
		} else {
			switch a := a.(type) {
			case nil:
				v = "NULL"
			case string:
				v = "'" + strings.ReplaceAll(a, "'", "''") + "'"
			default:
				v = fmt.Sprint(a)
			}
		}
		sql = strings.ReplaceAll(sql, "$"+strconv.Itoa(k), v)
	}
	return sql
}

// TestPgbenchScriptIsTheShopsCheckout: scripts/pgbench-checkout.sql holds
// the statements the PostgreSQL store sends for a cart update and a
// checkout at once, in order, so that the pgbench comparison measures the
// same SQL as the service. The store's statements are recorded by a query
// hook, their arguments written in as the script writes them, and both
// sides compared with their white space and case normalised.
func TestPgbenchScriptIsTheShopsCheckout(t *testing.T) {
	text, err := os.ReadFile(pgbenchScript)
	if err != nil {
		t.Fatal(err)
	}
	want := scriptStatements(string(text))

	type call struct {
		sql  string
		args []any
	}
	var (
		mu        sync.Mutex
		recording bool
		calls     []call
	)
	hook := func(sql string, args []any) {
		mu.Lock()
		defer mu.Unlock()
		if recording {
			calls = append(calls, call{sql, slices.Clone(args)})
		}
	}
	ctx := t.Context()
	cfg := backend.Config{DatabaseURL: pgtest.NewDatabase(t), Postgres: postgres.Options{QueryHook: hook}}
	if _, err := backend.Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Seed(ctx, seed.Items(200)); err != nil {
		t.Fatal(err)
	}
	// A session id that no other argument equals (quantities, priorities
	// and sequence numbers are 1).
	var sess *shop.Session
	for range 7 {
		_, hash := shop.NewToken()
		if sess, err = b.Store.CreateSession(ctx, hash); err != nil {
			t.Fatal(err)
		}
	}
	const item, key = int64(5), "k424242"
	// The checkout the script's comments describe: loadlab's shopper, no
	// expected total.
	checkout := shop.Checkout{CustomerName: "Load Test", Email: "load@example.com"}

	mu.Lock()
	recording = true
	mu.Unlock()
	if _, err := b.Store.SetCartItem(ctx, sess.ID, item, 1); err != nil {
		t.Fatal(err)
	}
	o, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: key, Checkout: checkout})
	if err != nil {
		t.Fatalf("checkout: %v", err)
	}
	mu.Lock()
	recording = false
	got := calls
	mu.Unlock()

	// The order's time is the script's :now; the script asks for no
	// River notification (the store asks for one at most once per fetch
	// cooldown: the first checkout of a process does), so the
	// notification's channel and payload are written as NULL.
	vars := map[any]string{sess.ID: ":sid", item: ":item", key: "'k' || :key::text"}
	var sent []string
	for _, c := range got {
		if n := strings.TrimSpace(strings.ToLower(c.sql)); n == "begin" || n == "commit" {
			sent = append(sent, strings.ToUpper(n))
			continue
		}
		args := c.args
		if strings.Contains(c.sql, "pg_notify(current_schema()") && len(args) >= 15 {
			args = slices.Clone(args)
			args[13], args[14] = nil, nil
		}
		for _, a := range args {
			if at, ok := a.(int64); ok && at > 1_000_000_000_000_000 { // micros since 1970: the order's time
				vars[at] = ":now"
			}
		}
		sent = append(sent, asScript(c.sql, args, vars))
	}
	if o == nil {
		t.Fatal("no order")
	}
	if len(sent) != len(want) {
		t.Errorf("the store sent %d statements, %s holds %d", len(sent), pgbenchScript, len(want))
	}
	for k := range min(len(sent), len(want)) {
		if g, w := normalised(sent[k]), normalised(want[k]); g != w {
			t.Errorf("statement %d differs:\nthe store sent (as the script writes it):\n%s\n\n%s has:\n%s", k+1, sent[k], pgbenchScript, want[k])
		}
	}
	if t.Failed() {
		t.Logf("the store's statements, as the script would write them:\n%s", strings.Join(sent, ";\n\n"))
	}
}
