package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop/nats/natstest"
)

// TestOrderStreamFromAnotherReplica: two processes' wiring over one
// database and one NATS: replica A (api + worker, so its relay publishes
// the outbox) takes the order; its owner streams the order's events from
// replica B (api only) and sees placed, confirmed, ready in order, then
// the end of the stream.
func TestOrderStreamFromAnotherReplica(t *testing.T) {
	srv := natstest.Start(t)
	dir := t.TempDir()
	// --nats-timeout: on a loaded machine setting up a consumer took over
	// the 2 s default (a fresh-clone CI run at load 33), and the stream
	// then rightly polled; what is tested here is the wiring, not the bound.
	a := start(t, dir, "--role", "all", "--nats", srv.URL(), "--replica-name", "a", "--nats-timeout", "60s")
	b := start(t, dir, "--role", "api", "--nats", srv.URL(), "--replica-name", "b", "--nats-timeout", "60s")

	code, body := call(t, "POST", a.api+"/v1/sessions", "", "", "")
	var sess struct{ Token string }
	json.Unmarshal(body, &sess) //nolint:errcheck
	if code != 201 {
		t.Fatalf("session: %d %s", code, body)
	}
	if code, body := call(t, "PUT", a.api+"/v1/cart/items/3", sess.Token, "", `{"quantity": 1}`); code != 200 {
		t.Fatalf("cart: %d %s", code, body)
	}
	code, body = call(t, "POST", a.api+"/v1/orders", sess.Token, "stream-1", `{"customer_name": "Ada", "email": "ada@example.com"}`)
	var order struct{ ID int64 }
	json.Unmarshal(body, &order) //nolint:errcheck
	if code != 201 {
		t.Fatalf("checkout on a: %d %s", code, body)
	}

	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/orders/%d/events", b.api, order.ID), nil)
	req.Header.Set("Authorization", "Bearer "+sess.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("X-Replica") != "b" {
		t.Fatalf("stream: %d from replica %q", res.StatusCode, res.Header.Get("X-Replica"))
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var statuses []string
	for done := false; !done; {
		select {
		case line, ok := <-lines:
			if !ok {
				done = true
				break
			}
			if strings.HasPrefix(line, ": ") && strings.Contains(line, "polling") {
				t.Fatalf("replica b polls instead of following NATS: %q", line)
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var e struct{ Status string }
				json.Unmarshal([]byte(data), &e) //nolint:errcheck
				statuses = append(statuses, e.Status)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("stream stalled after %v", statuses)
		}
	}
	if got := strings.Join(statuses, ","); got != "placed,confirmed,ready" {
		t.Fatalf("statuses %s, want placed,confirmed,ready", got)
	}
}
