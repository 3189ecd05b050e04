// Command benchtarget is the local target scripts/bench-generators.sh loads,
// and the ceiling scripts/bench.sh compares the menu with: a bare net/http
// server that answers every request with a fixed body (generated, or a
// file's bytes) after an optional fixed delay, and measures its own handling
// time so that the generators' latency figures can be compared with the
// truth.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8099", "listen address")
	bodyBytes := flag.Int("body-bytes", 20<<10, "response body size")
	delay := flag.Duration("delay", 0, "fixed delay before answering")
	bodyFile := flag.String("body-file", "", "answer with this file's bytes instead (the ceiling of scripts/bench.sh serves the menu's)")
	contentType := flag.String("content-type", "text/plain", "Content-Type of the answers")
	contentEncoding := flag.String("content-encoding", "", "Content-Encoding of the answers (when the body file is compressed)")
	flag.Parse()

	body := make([]byte, *bodyBytes)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	if *bodyFile != "" {
		b, err := os.ReadFile(*bodyFile)
		if err != nil {
			log.Fatal(err)
		}
		body = b
	}
	var mu sync.Mutex
	hist := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if *delay > 0 {
			time.Sleep(*delay)
		}
		w.Header().Set("Content-Type", *contentType)
		if *contentEncoding != "" {
			w.Header().Set("Content-Encoding", *contentEncoding)
		}
		w.Write(body)
		if *delay > 0 { // the truth is only needed, and only paid for, in delay mode
			us := time.Since(start).Microseconds()
			mu.Lock()
			hist.RecordValue(us)
			mu.Unlock()
		}
	})
	// /__stats reports the server-side handling time since the last reset.
	mux.HandleFunc("/__stats", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		ms := func(q float64) float64 { return float64(hist.ValueAtQuantile(q)) / 1000 }
		json.NewEncoder(w).Encode(map[string]any{
			"count": hist.TotalCount(), "p50_ms": ms(50), "p90_ms": ms(90), "p99_ms": ms(99), "max_ms": float64(hist.Max()) / 1000,
		})
		if r.URL.Query().Get("reset") == "1" {
			hist.Reset()
		}
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	fmt.Fprintf(os.Stderr, "benchtarget: listening on %s, body %d bytes, delay %v\n", *addr, len(body), *delay)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
