package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// OrderHistory reads an order's recorded status changes (the outbox), for
// the start of a stream, for a resumed one, and when the live feed is down.
type OrderHistory interface {
	shop.OrderEventReader
}

// EventFeed follows one order's events live, from any replica (NATS
// JetStream in the scale-out set-up). events carries them in order; lost
// is closed when the feed fails. Both end with ctx. WatchOrder bounds its
// own call to the bus (ctx has no deadline: it is the feed's whole life),
// and a stream does not wait for it: it polls the database meanwhile.
type EventFeed interface {
	WatchOrder(ctx context.Context, orderID int64) (events <-chan shop.OrderEvent, lost <-chan struct{}, err error)
}

// StreamConfig tunes GET /v1/orders/{id}/events; zero values take the
// defaults.
type StreamConfig struct {
	// MaxPerSession and MaxOpen cap the streams open at once on this
	// replica for one session and in all (8 and 1,000; negative: no cap).
	// Each stream holds a goroutine, buffers and a poll of the database:
	// one session held 2,000 on one order (145 MiB) before there was a
	// cap. Past either the request is refused with 429.
	MaxPerSession, MaxOpen int
	// Heartbeat is how often an idle stream sends a comment line, so that
	// proxies and load balancers do not close it as idle (nginx's default
	// proxy_read_timeout is 60 s).
	Heartbeat time.Duration
	// Poll is how often a stream without a live feed reads the database.
	Poll time.Duration
	// SafetyPoll is how often a stream fed by the bus reads the database
	// anyway (5 s): a change whose announcement the bus dropped (as a
	// duplicate of an old stream's, after the database was reset) still
	// arrives.
	SafetyPoll time.Duration
	// MaxDuration ends a stream that has not reached "ready" by then; the
	// client resumes with Last-Event-ID, on whichever replica.
	MaxDuration time.Duration
	// WriteTimeout bounds each write, replacing the server's 30 s
	// WriteTimeout, which counts from the start of the request.
	WriteTimeout time.Duration
}

func (c *StreamConfig) defaults() {
	if c.MaxPerSession == 0 {
		c.MaxPerSession = DefaultStreamsPerSession
	}
	if c.MaxOpen == 0 {
		c.MaxOpen = DefaultStreams
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.SafetyPoll <= 0 {
		c.SafetyPoll = 5 * time.Second
	}
	if c.MaxDuration <= 0 {
		c.MaxDuration = 15 * time.Minute
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
}

// streamCheck is how often a stream checks whether the process is
// draining (it then ends, and the client resumes on another replica).
const streamCheck = 250 * time.Millisecond

// handleOrderEvents streams an order's status to its owner as Server-Sent
// Events: the changes so far (the last is the current status), then each
// change as it happens, until the order is ready. Each event's id is its
// seq, so a client that reconnects with Last-Event-ID gets only what it
// missed, from any replica. What is committed is sent before the event bus
// is asked for anything: a bus that does not answer delays nothing.
func (s *server) handleOrderEvents(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "order")
	if err != nil {
		return err
	}
	after, err := lastEventID(r)
	if err != nil {
		return err
	}
	session := sessionID(r)
	release, err := s.streams.acquire(session)
	if err != nil {
		return err
	}
	defer release()
	past, after, ready, err := s.orderHistory(r.Context(), session, id, after)
	if err != nil {
		return err
	}
	if len(past) == 0 && ready {
		// Nothing left to say: 204 tells an EventSource not to reconnect.
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	st := startStream(w, s.stream.WriteTimeout, after)
	if st.write("retry: 2000\n\n") != nil {
		return nil
	}
	if s.feed == nil && st.comment(pollingNote(false, s.stream.Poll)) != nil {
		return nil
	}
	if err := st.send(past); err != nil || st.done {
		return nil
	}
	s.followOrder(r.Context(), st, session, id)
	return nil
}

// orderHistory is what a stream starts with: the order's events after the
// client's Last-Event-ID, and whether the order is ready. It has the
// ordinary request budget; another session's order is 404. A Last-Event-ID
// beyond the order's last event is not one this order sent (a stale or
// made-up id): the stream then starts from the first event, so it still
// ends when the order is ready.
func (s *server) orderHistory(ctx context.Context, session, id, lastID int64) (past []shop.OrderEvent, after int64, ready bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	order, err := s.ordering.Order(ctx, session, id)
	if err != nil {
		return nil, 0, false, err
	}
	all, err := s.history.OrderEvents(ctx, session, id, 0)
	if err != nil {
		return nil, 0, false, err
	}
	after = lastID
	if n := len(all); n > 0 && after > all[n-1].Seq {
		after = 0
	}
	for _, e := range all {
		if e.Seq > after {
			past = append(past, e)
		}
	}
	return past, after, order.Status == shop.StatusReady, nil
}

// liveFeed is the answer of the event bus to a request to follow an order.
type liveFeed struct {
	events <-chan shop.OrderEvent
	lost   <-chan struct{}
	err    error
}

// watch asks the bus for the order's live feed without waiting for it:
// the answer arrives on the channel (nil without a bus). The bus bounds
// its own call (EventFeed); until it answers the stream polls.
func (s *server) watch(ctx context.Context, id int64) <-chan liveFeed {
	if s.feed == nil {
		return nil
	}
	answer := make(chan liveFeed, 1)
	go func() {
		events, lost, err := s.feed.WatchOrder(ctx, id)
		answer <- liveFeed{events: events, lost: lost, err: err}
	}()
	return answer
}

// followOrder sends the order's changes until it is ready, the client
// leaves, the stream's time is up or the replica drains: from the live feed
// when the bus answers, from the database otherwise, with a heartbeat
// whenever it has been quiet.
func (s *server) followOrder(ctx context.Context, st *sseStream, session, id int64) {
	pending := s.watch(ctx, id)
	var events <-chan shop.OrderEvent
	var lost <-chan struct{}
	polling := true // until the live feed answers
	check := time.NewTicker(streamCheck)
	defer check.Stop()
	end := time.NewTimer(s.stream.MaxDuration)
	defer end.Stop()
	lastPoll := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			st.comment("stream time limit reached; reconnect with Last-Event-ID") //nolint:errcheck
			return
		case f := <-pending:
			pending = nil
			if f.err != nil {
				s.log.WarnContext(ctx, "order events feed unavailable; polling the database", "order_id", id, "error", f.err.Error())
				if st.comment(pollingNote(true, s.stream.Poll)) != nil {
					return
				}
				continue
			}
			events, lost, polling = f.events, f.lost, false
		case <-lost:
			events, lost, polling = nil, nil, true
			s.log.WarnContext(ctx, "order events feed lost; polling the database", "order_id", id)
			if st.comment(pollingNote(true, s.stream.Poll)) != nil {
				return
			}
		case e := <-events:
			if e.Seq <= st.last {
				continue // a duplicate: the bus's window is finite
			}
			// The bus says something changed; the record says what. A
			// stream left over from an earlier database (same order ids)
			// or a gap then cannot mislead the client.
			if s.catchUp(ctx, st, session, id) {
				return
			}
		case now := <-check.C:
			if s.draining() {
				st.comment("replica shutting down; reconnect with Last-Event-ID") //nolint:errcheck
				return
			}
			// Polling, or a slow safety net under the live feed (a
			// wake-up the bus dropped as a duplicate of an old stream's).
			if (polling && now.Sub(lastPoll) >= s.stream.Poll) || now.Sub(lastPoll) >= s.stream.SafetyPoll {
				lastPoll = now
				if s.catchUp(ctx, st, session, id) {
					return
				}
			}
			if now.Sub(st.lastWrite) >= s.stream.Heartbeat {
				if st.comment("heartbeat") != nil {
					return
				}
			}
		}
	}
}

// catchUp sends what the record has after the last event sent; stop is
// true when the stream is over (the order is ready, or the client gone).
// A failed read is logged and retried at the next poll.
func (s *server) catchUp(ctx context.Context, st *sseStream, session, id int64) (stop bool) {
	read, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	more, err := s.history.OrderEvents(read, session, id, st.last)
	if err != nil {
		if ctx.Err() != nil {
			return true
		}
		s.log.WarnContext(ctx, "order events read failed", "order_id", id, "error", err.Error())
		return false
	}
	return st.send(more) != nil || st.done
}

func pollingNote(feedConfigured bool, every time.Duration) string {
	if feedConfigured {
		return "live events unavailable (NATS unreachable); polling the database every " + every.String()
	}
	return "no event bus configured; polling the database every " + every.String()
}

// lastEventID is the seq a resuming client saw last (0: none).
func lastEventID(r *http.Request) (int64, error) {
	v := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, shop.Errorf(shop.EINVALID, "Last-Event-ID must be the id of an event this stream sent (a whole number), got %q", v)
	}
	return n, nil
}

// startStream sends the stream's headers. The server's write timeout
// counts from the request's start and would cut the stream: it sets a
// deadline per write instead. (The read timeout does not reach it: net/http
// clears the read deadline when it starts its background read of a request
// whose body is done; the reset only says so.
// TestOrderEventsOutliveTheServerTimeouts.)
func startStream(w http.ResponseWriter, writeTimeout time.Duration, after int64) *sseStream {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})  //nolint:errcheck // not every writer supports deadlines
	rc.SetWriteDeadline(time.Time{}) //nolint:errcheck
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: pass it through unbuffered
	w.WriteHeader(http.StatusOK)
	return &sseStream{w: w, rc: rc, timeout: writeTimeout, last: after}
}

// sseStream writes events, each flushed under its own write deadline.
type sseStream struct {
	w         http.ResponseWriter
	rc        *http.ResponseController
	timeout   time.Duration
	last      int64 // seq of the last event sent
	done      bool  // the order is ready: nothing more will come
	lastWrite time.Time
}

func (st *sseStream) write(s string) error {
	st.rc.SetWriteDeadline(time.Now().Add(st.timeout)) //nolint:errcheck
	if _, err := st.w.Write([]byte(s)); err != nil {
		return err
	}
	st.lastWrite = time.Now()
	return st.rc.Flush()
}

func (st *sseStream) comment(text string) error { return st.write(": " + text + "\n\n") }

// send writes the events after the last one sent, in seq order.
func (st *sseStream) send(events []shop.OrderEvent) error {
	var b strings.Builder
	for _, e := range events {
		if e.Seq <= st.last {
			continue
		}
		data, err := json.Marshal(e)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "id: %d\nevent: status\ndata: %s\n\n", e.Seq, data)
		st.last = e.Seq
		if e.Status == shop.StatusReady {
			st.done = true
		}
	}
	if b.Len() == 0 {
		return nil
	}
	return st.write(b.String())
}
