package main

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// batchedLog gathers log lines and writes them out together every flushEvery
// (or as soon as its buffer is full), instead of with one write system call
// per line. Under menu load the request log's own write was 14% of the
// service's CPU (docs/profiling.md). The cost: a crash loses at most the
// last flushEvery of log lines; Close writes out the rest.
type batchedLog struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

func newBatchedLog(w io.Writer, flushEvery time.Duration) *batchedLog {
	b := &batchedLog{w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(flushEvery)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.Flush() //nolint:errcheck // nowhere to report a failing log
			}
		}
	}()
	return b
}

// Write copies p into the buffer (slog reuses p after Write returns).
func (b *batchedLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Write(p)
}

// Flush writes out what is buffered.
func (b *batchedLog) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Flush()
}

// Close stops the flusher and writes out the rest.
func (b *batchedLog) Close() error {
	close(b.stop)
	<-b.done
	return b.Flush()
}
