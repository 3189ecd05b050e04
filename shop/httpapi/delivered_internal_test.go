package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// syncBuffer is a log sink the server's goroutines share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An answer the client read whole is logged and counted with the status it
// was sent with, even when the client closes its connection before the
// handler returns (net/http then cancels the request's context): it used
// to be logged as 499 and counted as abandoned. The handler here writes a
// body larger than net/http's buffers, so it reaches the client at once,
// and returns only after the client has read it and hung up.
func TestADeliveredAnswerIsNotLoggedAsAbandoned(t *testing.T) {
	logs := &syncBuffer{}
	s := newServer(Config{OpsOnly: true, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	big := map[string]string{"filler": strings.Repeat("x", 64<<10)}
	s.handle("GET /v1/menu", func(w http.ResponseWriter, r *http.Request) error {
		if err := encode(w, http.StatusOK, big); err != nil {
			return err
		}
		<-r.Context().Done() // the client has read the answer and closed
		return nil
	})
	srv := httptest.NewServer(http.HandlerFunc(s.serveMux))
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "GET /v1/menu HTTP/1.1\r\nHost: shop\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK || len(body) < 64<<10 {
		t.Fatalf("the client read %d, %d bytes, %v", res.StatusCode, len(body), err)
	}
	conn.Close()

	srv.Close() // waits for the handler, so its request line is written
	var line map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "request" {
			line = rec
		}
	}
	if line["status"] != float64(http.StatusOK) {
		t.Errorf("request line %v, want status 200: the client got the answer", line)
	}
	if n := testutil.ToFloat64(s.metrics.abandoned.WithLabelValues("GET /v1/menu")); n != 0 {
		t.Errorf("%v requests counted as abandoned, want 0", n)
	}
	if n := testutil.ToFloat64(s.metrics.requests.WithLabelValues("GET /v1/menu", "200")); n != 1 {
		t.Errorf("%v requests counted as 200, want 1", n)
	}
}
