package httpapi

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// The README's "Deadlines and objectives" table is routePlan, row for row.
func TestREADMEShowsTheRoutePlan(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := routePlanTable()
	if !strings.Contains(string(readme), want) {
		t.Fatalf("README.md's deadlines and objectives table is not routePlan's; it should read:\n%s", want)
	}
}

// Every route has a line in routePlan, and every line a route.
func TestEveryRouteHasItsLineInThePlan(t *testing.T) {
	s := newServer(Config{})
	registered := map[string]bool{}
	for _, p := range s.patterns {
		registered[p] = true
	}
	for _, sp := range routePlan {
		if !registered[sp.pattern] {
			t.Errorf("routePlan has %s, which no route serves", sp.pattern)
		}
		if sp.objective <= 0 || sp.timeout < sp.objective {
			t.Errorf("%s: objective %v, timeout %v: want 0 < objective <= timeout", sp.pattern, sp.objective, sp.timeout)
		}
	}
}

func routePlanTable() string {
	var stream StreamConfig
	stream.defaults()
	var b strings.Builder
	b.WriteString("| route | shed | latency objective | deadline |\n| --- | --- | ---: | ---: |\n")
	for _, sp := range routePlan {
		deadline := human(sp.timeout)
		switch {
		case sp.selfBounded:
			deadline += " (bounds its own waits)"
		case sp.stream:
			deadline += " to open; the stream lives up to " + strings.TrimSuffix(stream.MaxDuration.String(), "0s")
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", sp.pattern, sp.shed, human(sp.objective), deadline)
	}
	return b.String()
}

func human(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%g s", d.Seconds())
}
