package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
)

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestBatchedLogKeepsEveryLineInOrder(t *testing.T) {
	var out logBuffer
	lb := newBatchedLog(&out, time.Hour) // only Close flushes here
	log := slog.New(slog.NewTextHandler(lb, nil))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				log.Info("line", "g", g, "i", i)
			}
		})
	}
	wg.Wait()
	if err := lb.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2000 {
		t.Fatalf("%d lines after Close, want 2000", len(lines))
	}
	next := map[string]int{}
	for _, l := range lines {
		var g string
		var i int
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "g="); ok {
				g = v
			}
			if v, ok := strings.CutPrefix(f, "i="); ok {
				for _, c := range v {
					i = i*10 + int(c-'0')
				}
			}
		}
		if i != next[g] {
			t.Fatalf("goroutine %s: line %d after %d: lines torn or out of order:\n%s", g, i, next[g]-1, l)
		}
		next[g]++
	}
}

func TestBatchedLogFlushesOnItsOwn(t *testing.T) {
	var out logBuffer
	lb := newBatchedLog(&out, time.Millisecond)
	defer lb.Close()
	lb.Write([]byte("hello\n"))
	testwait.Eventually(t, 10*time.Second, func() error {
		if got := out.String(); got != "hello\n" {
			return fmt.Errorf("written so far without Close: %q", got)
		}
		return nil
	})
}

// BenchmarkRequestLog is one request-log record, as the HTTP adapter writes
// it, to a file: one write system call per line, or through batchedLog.
//
//	go test ./cmd/shop -run '^$' -bench RequestLog -count 6 | benchstat -col /writer -
func BenchmarkRequestLog(b *testing.B) {
	for _, buffered := range []bool{false, true} {
		name := "writer=direct"
		if buffered {
			name = "writer=buffered"
		}
		b.Run(name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "log"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			var w interface {
				Write([]byte) (int, error)
			} = f
			if buffered {
				lb := newBatchedLog(f, logFlushEvery)
				defer lb.Close()
				w = lb
			}
			log, err := newLogger("info", w)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				log.Log(ctx, slog.LevelInfo, "request", "method", "GET", "route", "GET /v1/menu", "path", "/v1/menu",
					"status", 200, "bytes", 29935, "duration_ms", 0.042)
			}
		})
	}
}
