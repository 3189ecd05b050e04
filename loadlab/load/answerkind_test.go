package load_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/perfscale/perfscale/loadlab/load"
)

// A service's 503s may be its own admission control refusing at once or a
// dependency that did not answer: one status, two fixes. The run counts
// the answers of a status by the kind their bodies name (problem+json's
// detail with its numbers as N, a problem type kept whole), with the first
// message of each kind as its sample; a body naming nothing (nginx's HTML
// page) is counted under the status alone.
func TestAnswersOfOneStatusAreCountedByKind(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := n.Add(1)
		switch k % 4 {
		case 0, 1:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"overloaded: refused (%d in the queue)","request_id":"r%d"}`, k, k)
		case 2:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"type":"https://example.com/probs/shard-down","title":"Shard down","status":503,"detail":"shard %d"}`, k%3)
		case 3:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>")
		}
	}))
	defer srv.Close()
	for _, client := range clients {
		t.Run(string(client), func(t *testing.T) {
			n.Store(0)
			res := run(t, load.Config{Target: &load.Request{Method: "GET", URL: srv.URL}, Concurrency: 2, Requests: 40, Client: client})
			ep := res.Endpoints[0]
			if ep.Errors.ByStatus["503"] != 40 || len(ep.Errors.Causes) != 3 {
				t.Fatalf("by status %v, causes %+v; want 40 503s in 3 kinds", ep.Errors.ByStatus, ep.Errors.Causes)
			}
			want := map[string]load.Cause{
				"overloaded: refused (N in the queue)": {Count: 20, Sample: "overloaded: refused ("},
				"https://example.com/probs/shard-down": {Count: 10, Type: "https://example.com/probs/shard-down", Sample: "shard "},
				"":                                     {Count: 10},
			}
			for _, c := range ep.Errors.Causes {
				w, ok := want[c.Kind]
				if !ok || c.Cause != "503 Service Unavailable" || c.Status != 503 || c.Count != w.Count || c.Type != w.Type ||
					len(c.Sample) < len(w.Sample) || c.Sample[:len(w.Sample)] != w.Sample {
					t.Errorf("cause %+v; want %+v", c, w)
				}
			}
		})
	}
}
