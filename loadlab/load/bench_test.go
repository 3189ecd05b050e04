package load_test

import (
	"context"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/perfscale/perfscale/loadlab/load"
)

// benchTarget serves a fixed body with fasthttp's server, which allocates
// nothing per request, so that allocs/op below are the generator's own.
func benchTarget(b *testing.B, bodyBytes int) string {
	b.Helper()
	body := make([]byte, bodyBytes)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) { c.Write(body) }}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown() })
	return "http://" + ln.Addr().String() + "/"
}

// BenchmarkClosedLoop measures the whole generator per request (client,
// recording, bookkeeping) against an in-process target with a 20 KB body.
// ns/op includes the target's share of the CPU; allocs/op is the
// generator's alone. Compare the clients with
//
//	go test -run - -bench ClosedLoop -benchmem ./loadlab/load/
func BenchmarkClosedLoop(b *testing.B) {
	url := benchTarget(b, 20<<10)
	for _, client := range []load.Client{load.ClientFastHTTP, load.ClientNetHTTP} {
		b.Run(string(client), func(b *testing.B) {
			b.ReportAllocs()
			res, err := load.Run(context.Background(), load.Config{
				Target: &load.Request{Method: "GET", URL: url}, Concurrency: 8, Requests: int64(b.N), Client: client,
			})
			if err != nil {
				b.Fatal(err)
			}
			if res.Errors.Total() != 0 || res.Requests != int64(b.N) {
				b.Fatalf("%d requests, errors %+v", res.Requests, res.Errors)
			}
		})
	}
}
