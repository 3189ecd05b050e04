// Package shedconn sheds requests before net/http parses them, while a
// handler refuses them. A replica at ten times its capacity refuses nine
// requests for each one it answers, and net/http's own work per request
// (reading and parsing it, its ResponseWriter, the headers) costs about as
// much as the cheapest answer: a refusal must cost under a ninth of one.
//
// Connections are served by net/http as usual. When a handler has refused
// a request and written its whole answer, it may hand the connection over
// (Take): net/http lets go of it (Hijack) and a goroutine of this package
// reads the next requests itself. Each request it understands entirely
// (ParseHead) it puts to the handler's Judge; one the Judge refuses is
// answered with the bytes the Judge gives and its body skipped; any other
// (admitted, or not understood: smuggling-shaped, too large, HTTP/1.0) is
// handed back with the connection and every byte read of it, unconsumed:
// the Listener's Accept gives net/http the connection again, which reads
// those bytes first and judges the request exactly as it always did.
// Answers stay in order: a connection is taken only after its answer is
// flushed, and handed back only between requests, nothing pending.
package shedconn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Options are the limits the fast path keeps, net/http's own (http.Server):
// a connection idle past IdleTimeout, a head not read within
// ReadHeaderTimeout or a body within ReadTimeout of its request's start, an
// answer not written within WriteTimeout is closed. The idle and write
// deadlines are moved only once half their span is spent (a deadline is a
// runtime timer to reset, a tenth of a refusal's cost each time): an idle
// connection closes between half of IdleTimeout and all of it after its
// last request, an answer is cut between half of WriteTimeout and all of
// it. A head or body already read whole needs no deadline of its own.
type Options struct {
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
}

// MaxHead is the longest request head the fast path reads; a longer one
// goes to net/http (whose own bound is larger).
const MaxHead = 8 << 10

// Listener is a net.Listener whose connections a handler may hand to the
// fast path (Take) and which come back through Accept.
type Listener struct {
	net.Listener
	opts     Options
	accepted chan accepted
	back     chan *Conn
	done     chan struct{}
	close    sync.Once
	mu       sync.Mutex
	shedding map[*Conn]struct{} // connections on the fast path
	closed   bool
	running  sync.WaitGroup // the accept loop and the fast paths
}

type accepted struct {
	c   net.Conn
	err error
}

// Listen wraps ln; Close must be called to end its accept loop.
func Listen(ln net.Listener, opts Options) *Listener {
	l := &Listener{Listener: ln, opts: opts, accepted: make(chan accepted), back: make(chan *Conn),
		done: make(chan struct{}), shedding: map[*Conn]struct{}{}}
	l.running.Add(1)
	go l.acceptLoop()
	return l
}

// acceptLoop accepts connections from the wrapped listener for Accept,
// which also takes connections handed back: one of them must not wait for
// the next new connection.
func (l *Listener) acceptLoop() {
	defer l.running.Done()
	for {
		c, err := l.Listener.Accept()
		select {
		case l.accepted <- accepted{c, err}:
		case <-l.done:
			if c != nil {
				c.Close()
			}
			return
		}
		var temporary interface{ Temporary() bool }
		if err != nil && !(errors.As(err, &temporary) && temporary.Temporary()) {
			return // net/http stops on it too
		}
	}
}

// Accept returns the next new connection, or one handed back.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.back:
		return c, nil
	case a := <-l.accepted:
		if a.err != nil {
			return nil, a.err
		}
		return &Conn{Conn: a.c, l: l}, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the listener and every connection on the fast path, and
// waits for their goroutines. A draining server closes its idle
// connections; these have no request of net/http's in flight, only, at
// most, a refusal being written, which was no work and may be sent again.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	l.close.Do(func() {
		close(l.done)
		l.mu.Lock()
		l.closed = true
		for c := range l.shedding {
			c.Conn.Close() // its goroutine's read or write fails, and it ends
		}
		l.mu.Unlock()
	})
	l.running.Wait()
	return err
}

// Shedding is how many connections are on the fast path now.
func (l *Listener) Shedding() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.shedding)
}

// Conn is a Listener's connection: its Read gives first the bytes the fast
// path read and handed back.
type Conn struct {
	net.Conn
	l       *Listener
	pending []byte
	// On the fast path: the read deadline set and whether it is the
	// idle one, and the write deadline set.
	readBy     time.Time
	readIsIdle bool
	writeBy    time.Time
}

func (c *Conn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close, as it does after some refusals of
// its own, when the connection can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

type connKey struct{}

// ConnContext is http.Server's ConnContext for a Listener: it lets a
// handler find its connection (Take).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if sc, ok := c.(*Conn); ok {
		return context.WithValue(ctx, connKey{}, sc)
	}
	return ctx
}

// A Judge decides each request the fast path understood. Refuse appends
// the request's whole answer (status line, header, body) to dst and
// returns it and true when it refuses the request; false, and the request
// goes to net/http with its connection. It is called on the connection's
// goroutine, one request at a time.
type Judge interface {
	Refuse(dst []byte, r *Request) ([]byte, bool)
}

// Take hands the connection of r, whose answer w has been written in full,
// to the fast path, which then serves its next requests with the Judge
// judge makes (made only for a connection taken: a refusal that stays in
// net/http costs nothing more); it reads what is left of r's body first.
// It reports false, having done nothing but maybe read some of the body,
// when the connection cannot go on as net/http would keep it (HTTP/1.0,
// Connection: close, a transfer coding, Expect, a body longer than MaxBody
// or not all there, a client gone), is not a Listener's, or the listener
// is closing. After true, the handler must return at once and not touch w
// again.
func Take(w http.ResponseWriter, r *http.Request, judge func() Judge) bool {
	c, ok := r.Context().Value(connKey{}).(*Conn)
	if !ok || r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Close || len(r.TransferEncoding) > 0 ||
		r.ContentLength < 0 || r.ContentLength > MaxBody || len(r.Header["Expect"]) > 0 || r.Context().Err() != nil {
		return false
	}
	flush, ok := w.(http.Flusher)
	hj, ok2 := w.(http.Hijacker)
	if !ok || !ok2 {
		return false
	}
	if r.ContentLength > 0 {
		// net/http reads what is left of a body before it writes the
		// answer's header (so does the fast path): the header is out,
		// so this only makes sure the body was all there.
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return false
		}
	}
	if !c.l.enter(c) {
		return false
	}
	j := judge()
	flush.Flush()
	_, rw, err := hj.Hijack()
	if err != nil {
		c.l.leave(c)
		return false
	}
	if err := rw.Writer.Flush(); err != nil {
		c.l.leave(c)
		c.Close()
		return true
	}
	// Hijack cleared the deadlines.
	c.readBy, c.readIsIdle, c.writeBy = time.Time{}, false, time.Time{}
	br := readers.Get().(*bufio.Reader)
	br.Reset(c)
	if n := rw.Reader.Buffered(); n > 0 {
		buffered, _ := rw.Reader.Peek(n)
		c.pending = append(append(make([]byte, 0, n+len(c.pending)), buffered...), c.pending...)
	}
	go c.shed(br, j)
	return true
}

// readers are the fast path's buffers, MaxHead each.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, MaxHead) }}

// enter counts c on the fast path, unless the listener is closed.
func (l *Listener) enter(c *Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.shedding[c] = struct{}{}
	l.running.Add(1)
	return true
}

func (l *Listener) leave(c *Conn) {
	l.untrack(c)
	l.running.Done()
}

// untrack: c is no longer on the fast path (its goroutine may still be
// handing it back).
func (l *Listener) untrack(c *Conn) {
	l.mu.Lock()
	delete(l.shedding, c)
	l.mu.Unlock()
}

// shed serves c's requests while j refuses them, then hands c back to
// net/http, or closes it.
func (c *Conn) shed(br *bufio.Reader, j Judge) {
	var req Request
	var out []byte
	handBack := false
	defer func() {
		if handBack {
			c.pending = append([]byte(nil), peekAll(br)...)
		}
		br.Reset(nil)
		readers.Put(br)
		// Untracked before it is handed back: net/http may hand it
		// over again at once, and track it anew.
		c.l.untrack(c)
		if !handBack || !c.l.handBack(c) {
			c.Close()
		}
		c.l.running.Done()
	}()
	for {
		head, start, whole, err := c.readHead(br)
		if err != nil {
			return // closed, idle or too slow, as net/http closes it
		}
		refused := false
		if whole && ParseHead(head, &req) {
			out, refused = j.Refuse(out[:0], &req)
		}
		if !refused {
			handBack = true
			return
		}
		br.Discard(len(head)) //nolint:errcheck // buffered
		if !c.answer(br, start, req.ContentLength, out) {
			return
		}
	}
}

// readHead waits for the next request (IdleTimeout) and reads its head
// (ReadHeaderTimeout from its first byte), leaving it buffered; start is
// when the head began. whole is false for a head the fast path does not
// read: longer than MaxHead, or cut short by the client (net/http then
// answers as it would).
func (c *Conn) readHead(br *bufio.Reader) (head []byte, start time.Time, whole bool, err error) {
	o := c.l.opts
	if br.Buffered() == 0 {
		c.idleDeadline(time.Now(), o.IdleTimeout)
		if _, err := br.Peek(1); err != nil {
			return nil, start, false, err
		}
	}
	start = time.Now()
	for armed := false; ; armed = true {
		b := peekAll(br)
		i := indexHeadEnd(b)
		if i >= 0 {
			return b[:i], start, true, nil
		}
		if i == -2 || len(b) >= MaxHead {
			return nil, start, false, nil
		}
		if !armed {
			c.readDeadline(deadline(start, o.ReadHeaderTimeout))
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
				return nil, start, false, err
			}
			return nil, start, false, nil
		}
	}
}

// idleDeadline makes sure the connection waits at most d from now, and at
// least half of it, moving the deadline only when needed (Options).
func (c *Conn) idleDeadline(now time.Time, d time.Duration) {
	if d <= 0 {
		if c.readIsIdle && c.readBy.IsZero() {
			return
		}
		c.readDeadline(time.Time{})
		c.readIsIdle = true
		return
	}
	if c.readIsIdle && !c.readBy.IsZero() && c.readBy.Sub(now) >= d/2 {
		return
	}
	c.readDeadline(now.Add(d))
	c.readIsIdle = true
}

func (c *Conn) readDeadline(t time.Time) {
	c.SetReadDeadline(t) //nolint:errcheck // a failed read says
	c.readBy, c.readIsIdle = t, false
}

// answer skips the refused request's body (ReadTimeout from start, when
// it is not all read yet) and writes its answer out; it reports whether
// the connection goes on. As net/http, it reads the body before answering
// (a client that writes its whole request before reading could otherwise
// deadlock), and a body not read in time ends the connection after the
// answer (net/http's answer then says Connection: close; here the client
// sees the close).
func (c *Conn) answer(br *bufio.Reader, start time.Time, body int64, out []byte) bool {
	o := c.l.opts
	var bodyErr error
	if body > 0 {
		if int64(br.Buffered()) < body {
			c.readDeadline(deadline(start, o.ReadTimeout))
		}
		_, bodyErr = br.Discard(int(body))
	}
	if d := o.WriteTimeout; d > 0 {
		if now := time.Now(); c.writeBy.Sub(now) < d/2 {
			c.writeBy = now.Add(d)
			c.SetWriteDeadline(c.writeBy) //nolint:errcheck // a failed write says
		}
	}
	if _, err := c.Conn.Write(out); err != nil || bodyErr != nil {
		return false
	}
	return true
}

// handBack gives c to net/http again through Accept; false when the
// listener is closed.
func (l *Listener) handBack(c *Conn) bool {
	c.SetDeadline(time.Time{}) //nolint:errcheck // net/http sets its own
	select {
	case l.back <- c:
		return true
	case <-l.done:
		return false
	}
}

func peekAll(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}

// indexHeadEnd is the length of the head in b (through its blank line);
// -1 when b holds no whole head yet, -2 when its head ends in a bare LF
// (net/http reads such a head; the fast path leaves it to net/http).
func indexHeadEnd(b []byte) int {
	crlf := bytes.Index(b, []byte("\n\r\n"))
	if lf := bytes.Index(b, []byte("\n\n")); lf >= 0 && (crlf < 0 || lf < crlf) {
		return -2
	}
	if crlf < 0 {
		return -1
	}
	return crlf + 3
}

func deadline(from time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return from.Add(d)
}
