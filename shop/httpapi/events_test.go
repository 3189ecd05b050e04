package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/httpapi"
	shopnats "github.com/perfscale/perfscale/shop/nats"
	"github.com/perfscale/perfscale/shop/nats/natstest"
)

// sse is one thing a stream sent: an event or a comment line.
type sse struct {
	id, event, data string
	comment         string
}

// sseClient reads one event stream.
type sseClient struct {
	t      *testing.T
	res    *http.Response
	frames chan sse
	cancel context.CancelFunc
}

// openStream opens GET /v1/orders/{id}/events on base; lastID is sent as
// Last-Event-ID when not empty.
func openStream(t *testing.T, base, token string, orderID int64, lastID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	hr, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/v1/orders/%d/events", base, orderID), nil)
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Authorization", "Bearer "+token)
	hr.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		hr.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := &sseClient{t: t, res: res, frames: make(chan sse, 64), cancel: cancel}
	t.Cleanup(c.close)
	if res.StatusCode == http.StatusOK {
		go c.read()
	}
	return c
}

func (c *sseClient) close() { c.cancel(); c.res.Body.Close() }

// read parses the stream (the WHATWG event-stream format) into frames and
// closes the channel at the end of the body.
func (c *sseClient) read() {
	defer close(c.frames)
	sc := bufio.NewScanner(c.res.Body)
	var cur sse
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur != (sse{}) {
				c.frames <- cur
			}
			cur = sse{}
		case strings.HasPrefix(line, ":"):
			c.frames <- sse{comment: strings.TrimSpace(line[1:])}
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				cur.id = value
			case "event":
				cur.event = value
			case "data":
				cur.data = value
			}
		}
	}
}

// next returns the next frame that is not a heartbeat; ok is false at the
// end of the stream. The generous limit only bounds a broken test.
func (c *sseClient) next() (f sse, ok bool) {
	c.t.Helper()
	limit := time.After(60 * time.Second)
	for {
		select {
		case f, ok = <-c.frames:
			if ok && f.comment == "heartbeat" {
				continue
			}
			return f, ok
		case <-limit:
			c.t.Fatal("no frame from the stream within 60s")
			return sse{}, false
		}
	}
}

// nextEvent skips comments and returns the next event.
func (c *sseClient) nextEvent() shop.OrderEvent {
	c.t.Helper()
	for {
		f, ok := c.next()
		if !ok {
			c.t.Fatal("the stream ended before the expected event")
		}
		if f.comment != "" {
			continue
		}
		var e shop.OrderEvent
		if err := json.Unmarshal([]byte(f.data), &e); err != nil {
			c.t.Fatalf("event data %q: %v", f.data, err)
		}
		if f.event != "status" || f.id != fmt.Sprint(e.Seq) {
			c.t.Fatalf("frame %+v: want event status with id = seq", f)
		}
		return e
	}
}

// expectStatuses reads events until the stream ends and checks them.
func (c *sseClient) expectStatuses(orderID int64, firstSeq int64, want ...shop.Status) {
	c.t.Helper()
	for i, st := range want {
		e := c.nextEvent()
		if e.OrderID != orderID || e.Status != st || e.Seq != firstSeq+int64(i) {
			c.t.Fatalf("event %d: %+v, want order %d %s seq %d", i, e, orderID, st, firstSeq+int64(i))
		}
	}
	for {
		f, ok := c.next()
		if !ok {
			return
		}
		if f.comment == "" {
			c.t.Fatalf("an event after ready: %+v", f)
		}
	}
}

func (c *sseClient) expectComment(substr string) {
	c.t.Helper()
	for {
		f, ok := c.next()
		if !ok {
			c.t.Fatalf("the stream ended before a comment with %q", substr)
		}
		if f.comment == "" {
			c.t.Fatalf("event %+v before the comment %q", f, substr)
		}
		if strings.Contains(f.comment, substr) {
			return
		}
	}
}

func placeOne(t *testing.T, a *api) (token string, orderID int64) {
	t.Helper()
	token = a.session()
	a.add(token, 7, 1)
	r := a.checkout(token, "sse-"+token[:8], ada)
	// 200: the client's transport sent the POST again (it carries an
	// Idempotency-Key) after a connection the server's short timeouts cut,
	// and got the same order back.
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		t.Fatalf("checkout: %d %s", r.status, r.body)
	}
	var o shop.Order
	r.json(t, &o)
	return token, o.ID
}

// TestOrderEventsWithoutABus: on the embedded default (no NATS) the stream
// polls the database, says so, and still delivers placed, confirmed, ready
// in order, then ends; it resumes after Last-Event-ID; it is the owner's only.
func TestOrderEventsWithoutABus(t *testing.T) {
	a := newAPI(t, options{worker: true, stream: httpapi.StreamConfig{Poll: 20 * time.Millisecond}})
	token, id := placeOne(t, a)

	s := openStream(t, a.url, token, id, "")
	if s.res.StatusCode != http.StatusOK || !strings.HasPrefix(s.res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content type %q", s.res.StatusCode, s.res.Header.Get("Content-Type"))
	}
	if got := s.res.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("Cache-Control %q, want no-cache", got)
	}
	s.expectComment("no event bus configured; polling the database")
	s.expectStatuses(id, 1, shop.StatusPlaced, shop.StatusConfirmed, shop.StatusReady)

	// Resumed after seq 1: only what was missed.
	s2 := openStream(t, a.url, token, id, "1")
	s2.expectStatuses(id, 2, shop.StatusConfirmed, shop.StatusReady)
	// Resumed after the last one of a ready order: 204, so an EventSource
	// stops reconnecting.
	if s3 := openStream(t, a.url, token, id, "3"); s3.res.StatusCode != http.StatusNoContent {
		t.Fatalf("resume after ready: %d, want 204", s3.res.StatusCode)
	}

	// Another session's order is 404, as for the plain read; a bad
	// Last-Event-ID is 400.
	other := a.session()
	for _, tc := range []struct {
		token, last string
		status      int
	}{{other, "", http.StatusNotFound}, {token, "x", http.StatusBadRequest}, {token, "-1", http.StatusBadRequest}} {
		r := a.do(req{method: "GET", path: fmt.Sprintf("/v1/orders/%d/events", id), token: tc.token,
			header: map[string]string{"Last-Event-ID": tc.last}})
		r.problem(t, tc.status)
	}
	r := a.do(req{method: "GET", path: fmt.Sprintf("/v1/orders/%d/events", id)})
	r.problem(t, http.StatusUnauthorized)
}

// TestOrderEventsHeartbeat: a stream with nothing to say sends comment
// lines, so proxies keep it open.
func TestOrderEventsHeartbeat(t *testing.T) {
	a := newAPI(t, options{stream: httpapi.StreamConfig{Heartbeat: 20 * time.Millisecond}}) // no worker: stays placed
	token, id := placeOne(t, a)
	s := openStream(t, a.url, token, id, "")
	if e := s.nextEvent(); e.Status != shop.StatusPlaced {
		t.Fatalf("first event %+v, want placed", e)
	}
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				t.Fatal("stream ended while the order is placed")
			}
			if f.comment == "heartbeat" {
				return
			}
			if f.comment == "" {
				t.Fatalf("unexpected event %+v", f)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("no heartbeat within 60s")
		}
	}
}

// TestOrderEventsOutliveTheServerTimeouts: the server's read and write
// timeouts count from a request's start, and a stream lasts far longer; it
// lifts them for itself. With them at 200 and 300 ms, a stream that has
// been open past both still delivers the order's next events. (Without the
// stream's write deadlines it ended 502 ms after it opened.)
func TestOrderEventsOutliveTheServerTimeouts(t *testing.T) {
	const read, write = 200 * time.Millisecond, 300 * time.Millisecond
	a := newAPI(t, options{serverTimeouts: &[2]time.Duration{read, write}, // no worker: stays placed
		stream: httpapi.StreamConfig{Heartbeat: 50 * time.Millisecond, Poll: 20 * time.Millisecond}})
	token, id := placeOne(t, a)
	opened := time.Now()
	s := openStream(t, a.url, token, id, "")
	if e := s.nextEvent(); e.Status != shop.StatusPlaced {
		t.Fatalf("first event %+v, want placed", e)
	}
	// Read heartbeats until both timeouts have run out since the request
	// began; a stream the server cut would end here.
	for time.Since(opened) < 2*write {
		f, ok := <-s.frames
		if !ok {
			t.Fatalf("the stream ended %v after it opened, with the server's timeouts at %v and %v", time.Since(opened).Round(time.Millisecond), read, write)
		}
		if f.comment == "" {
			t.Fatalf("unexpected event %+v", f)
		}
	}
	ctx := context.Background()
	for _, step := range [][2]shop.Status{{shop.StatusPlaced, shop.StatusConfirmed}, {shop.StatusConfirmed, shop.StatusReady}} {
		if ok, err := a.store.AdvanceOrder(ctx, id, step[0], step[1]); err != nil || !ok {
			t.Fatalf("advance to %s: %v %v", step[1], ok, err)
		}
	}
	s.expectStatuses(id, 2, shop.StatusConfirmed, shop.StatusReady)
}

// natsFeed starts a private nats-server, a bus on it and a relay over a's
// store, as the worker role runs it.
func natsFeed(t *testing.T) (*natstest.Server, *shopnats.Bus, func(a *api)) {
	t.Helper()
	return natsFeedWith(t, shopnats.Config{})
}

// natsFeedWith is natsFeed with the bus's configuration (its URL is the
// private server's).
func natsFeedWith(t *testing.T, cfg shopnats.Config) (*natstest.Server, *shopnats.Bus, func(a *api)) {
	t.Helper()
	srv := natstest.Start(t)
	ctx := t.Context()
	cfg.URL = srv.URL()
	bus, err := shopnats.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { <-done; bus.Close() })
	startRelay := func(a *api) {
		relay := shopnats.NewRelay(a.store, bus, shopnats.RelayConfig{Poll: 20 * time.Millisecond})
		go func() { defer close(done); relay.Run(ctx) }() //nolint:errcheck // returns nil
	}
	return srv, bus, startRelay
}

// TestOrderEventsFromAnotherReplica: the order is taken by replica A; its
// owner follows it on replica B, fed by NATS JetStream, and sees placed,
// confirmed, ready in order. Nothing polls: the poll interval is longer
// than the test allows.
func TestOrderEventsFromAnotherReplica(t *testing.T) {
	_, bus, startRelay := natsFeed(t)
	a := newAPI(t, options{worker: true, feed: bus, stream: httpapi.StreamConfig{Poll: time.Hour, SafetyPoll: time.Hour}})
	startRelay(a)
	cfgB := a.cfg
	cfgB.Registry = nil
	b := httptest.NewServer(httpapi.NewHandler(cfgB))
	t.Cleanup(b.Close)

	token, id := placeOne(t, a)
	s := openStream(t, b.URL, token, id, "")
	s.expectStatuses(id, 1, shop.StatusPlaced, shop.StatusConfirmed, shop.StatusReady)
}

// TestOrderEventsFallBackWhenNATSGoes: an open stream whose feed is lost
// says so in a comment and carries on from the database.
func TestOrderEventsFallBackWhenNATSGoes(t *testing.T) {
	srv, bus, startRelay := natsFeed(t)
	a := newAPI(t, options{feed: bus, stream: httpapi.StreamConfig{Poll: 20 * time.Millisecond}}) // no worker: the test moves the order
	startRelay(a)
	token, id := placeOne(t, a)
	s := openStream(t, a.url, token, id, "")
	if e := s.nextEvent(); e.Status != shop.StatusPlaced {
		t.Fatalf("first event %+v", e)
	}
	srv.Stop()
	s.expectComment("NATS unreachable")
	ctx := context.Background()
	for _, step := range [][2]shop.Status{{shop.StatusPlaced, shop.StatusConfirmed}, {shop.StatusConfirmed, shop.StatusReady}} {
		if ok, err := a.store.AdvanceOrder(ctx, id, step[0], step[1]); err != nil || !ok {
			t.Fatalf("advance: %v %v", ok, err)
		}
	}
	s.expectStatuses(id, 2, shop.StatusConfirmed, shop.StatusReady)
}

// TestOrderEventsIgnoreAStaleStream: the stream still holds events of an
// earlier database's order with the same id (a reset data directory); the
// bus drops the new order's publishes as duplicates of those. The client
// still sees the new order's own events, from the record.
func TestOrderEventsIgnoreAStaleStream(t *testing.T) {
	_, bus, startRelay := natsFeed(t)
	ctx := context.Background()
	for seq, st := range []shop.Status{shop.StatusPlaced, shop.StatusConfirmed, shop.StatusReady} {
		old := shop.OrderEvent{OrderID: 1, Seq: int64(seq + 1), Status: st, At: time.Unix(0, 0)}
		if err := bus.Publish(ctx, old); err != nil {
			t.Fatal(err)
		}
	}
	a := newAPI(t, options{feed: bus, stream: httpapi.StreamConfig{Poll: time.Hour, SafetyPoll: 20 * time.Millisecond}})
	startRelay(a)
	token, id := placeOne(t, a)
	if id != 1 {
		t.Fatalf("order id %d, want 1 (the stale stream's)", id)
	}
	s := openStream(t, a.url, token, id, "")
	check := func(i int, st shop.Status) {
		t.Helper()
		e := s.nextEvent()
		if e.Status != st || e.Seq != int64(i+1) || e.At.Equal(time.Unix(0, 0)) {
			t.Fatalf("event %d: %+v, want this database's %s", i, e, st)
		}
	}
	// The stale stream wakes the stream up at once (its old ready);
	// the record says placed, and the stream goes on.
	check(0, shop.StatusPlaced)
	for _, step := range [][2]shop.Status{{shop.StatusPlaced, shop.StatusConfirmed}, {shop.StatusConfirmed, shop.StatusReady}} {
		if ok, err := a.store.AdvanceOrder(ctx, id, step[0], step[1]); err != nil || !ok {
			t.Fatalf("advance: %v %v", ok, err)
		}
	}
	check(1, shop.StatusConfirmed)
	check(2, shop.StatusReady)
}

// TestOrderEventsWhileNATSIsStuck: NATS is connected but answers nothing
// (its process stopped). A stream still sends the committed events at
// once, says it polls the database, keeps its heartbeat and delivers the
// order's changes from the database. (Before, it sent "retry: 2000" and
// then nothing for as long as NATS was stuck: the consumer was created
// with the request's context, and the past sent after that call.)
func TestOrderEventsWhileNATSIsStuck(t *testing.T) {
	srv, bus, startRelay := natsFeedWith(t, shopnats.Config{CallTimeout: 100 * time.Millisecond, FeedHeartbeat: 500 * time.Millisecond})
	a := newAPI(t, options{feed: bus, stream: httpapi.StreamConfig{Poll: 20 * time.Millisecond, Heartbeat: 50 * time.Millisecond}}) // no worker: the test moves the order
	startRelay(a)
	token, id := placeOne(t, a)
	srv.Pause()

	s := openStream(t, a.url, token, id, "")
	if e := s.nextEvent(); e.Status != shop.StatusPlaced {
		t.Fatalf("first event %+v, want placed", e)
	}
	s.expectComment("NATS unreachable")
	s.expectHeartbeat()
	ctx := context.Background()
	for _, step := range [][2]shop.Status{{shop.StatusPlaced, shop.StatusConfirmed}, {shop.StatusConfirmed, shop.StatusReady}} {
		if ok, err := a.store.AdvanceOrder(ctx, id, step[0], step[1]); err != nil || !ok {
			t.Fatalf("advance: %v %v", ok, err)
		}
	}
	s.expectStatuses(id, 2, shop.StatusConfirmed, shop.StatusReady)
}

// expectHeartbeat reads comments until a heartbeat; an event first fails.
func (c *sseClient) expectHeartbeat() {
	c.t.Helper()
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatal("the stream ended before a heartbeat")
			}
			if f.comment == "heartbeat" {
				return
			}
			if f.comment == "" {
				c.t.Fatalf("event %+v before a heartbeat", f)
			}
		case <-time.After(60 * time.Second):
			c.t.Fatal("no heartbeat within 60s")
		}
	}
}

// TestOrderEventsEndWhenReadyWhateverLastEventID: a Last-Event-ID beyond
// the order's last event is not one this order sent; the stream starts
// from the first event and still ends when the order is ready. (Before, it
// skipped every event up to that id and stayed open until its 15-minute
// limit.)
func TestOrderEventsEndWhenReadyWhateverLastEventID(t *testing.T) {
	a := newAPI(t, options{stream: httpapi.StreamConfig{Poll: 20 * time.Millisecond}}) // no worker: the test moves the order
	token, id := placeOne(t, a)
	s := openStream(t, a.url, token, id, "999")
	if e := s.nextEvent(); e.Status != shop.StatusPlaced || e.Seq != 1 {
		t.Fatalf("first event %+v, want placed, seq 1", e)
	}
	ctx := context.Background()
	for _, step := range [][2]shop.Status{{shop.StatusPlaced, shop.StatusConfirmed}, {shop.StatusConfirmed, shop.StatusReady}} {
		if ok, err := a.store.AdvanceOrder(ctx, id, step[0], step[1]); err != nil || !ok {
			t.Fatalf("advance: %v %v", ok, err)
		}
	}
	s.expectStatuses(id, 2, shop.StatusConfirmed, shop.StatusReady)

	// Ready already: the whole history, then the end.
	s2 := openStream(t, a.url, token, id, "1000")
	s2.expectStatuses(id, 1, shop.StatusPlaced, shop.StatusConfirmed, shop.StatusReady)
}

// TestOrderEventStreamsAreCapped: past the session's cap, and past the
// replica's, a new stream is refused with 429 problem+json and
// Retry-After; a closed stream frees its place. (Before, one session held
// 2,000 streams on one order.)
func TestOrderEventStreamsAreCapped(t *testing.T) {
	a := newAPI(t, options{stream: httpapi.StreamConfig{MaxPerSession: 2, MaxOpen: 3}}) // no worker: streams stay open
	tokenA, idA := placeOne(t, a)
	tokenB, idB := placeOne(t, a)
	tokenC, idC := placeOne(t, a)
	path := func(id int64) string { return fmt.Sprintf("/v1/orders/%d/events", id) }
	refused := func(token string, id int64, detail string) {
		t.Helper()
		r := a.do(req{method: "GET", path: path(id), token: token})
		detailGot, _ := r.problem(t, http.StatusTooManyRequests)["detail"].(string)
		if !strings.Contains(detailGot, detail) || r.header.Get("Retry-After") == "" {
			t.Fatalf("429 %q (Retry-After %q), want a detail with %q and Retry-After", detailGot, r.header.Get("Retry-After"), detail)
		}
	}
	open := func(token string, id int64) *sseClient {
		t.Helper()
		s := openStream(t, a.url, token, id, "")
		if s.res.StatusCode != http.StatusOK {
			t.Fatalf("stream: %d, want 200", s.res.StatusCode)
		}
		s.nextEvent()
		return s
	}
	first := open(tokenA, idA)
	open(tokenA, idA)
	refused(tokenA, idA, "this session has 2 order event streams open")
	open(tokenB, idB)
	refused(tokenC, idC, "this replica has 3 order event streams open")

	first.close()
	testwait.Eventually(t, 30*time.Second, func() error {
		s := openStream(t, a.url, tokenA, idA, "")
		if s.res.StatusCode != http.StatusOK {
			s.close()
			return fmt.Errorf("a stream after one was closed: %d", s.res.StatusCode)
		}
		return nil
	})
}
