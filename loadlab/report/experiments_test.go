package report

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/experiments"
)

func sampleExperiments() *experiments.Report {
	yes, no := true, false
	start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	return &experiments.Report{Started: start, Finished: start.Add(90 * time.Second), LoadBefore: 3.5, LoadAfter: math.NaN(),
		Experiments: []experiments.Result{{
			Name: "sync-mail", Claim: "mail in the request | slows checkout", Expected: "performance", Measure: "baseline",
			Verdict: "performance", Holds: &yes, Reason: "checkout p50 2 ms without, 52 ms with",
			Without:  &experiments.Side{Setting: "queue", Summary: "checkout p50 2.00 ms", Metrics: map[string]float64{"checkout.p50_ms": 2}},
			With:     &experiments.Side{Setting: "sync-mail", Summary: "checkout p50 52 ms", Metrics: map[string]float64{"checkout.p50_ms": 52}},
			Tradeoff: &experiments.TradeoffRow{Setting: "sync-mail → queue", Improved: "checkout.p50_ms 52 → 2 (-96%)", Worse: "the mail leaves later"},
		}, {
			Name: "global-lock-replicas", Claim: "a lock does not scale out", Expected: "efficiency-falls", Measure: "replicas",
			Verdict: "machine-bound", Reason: "no verdict: the machine, not the system, bounded a count",
			Without: &experiments.Side{Setting: "cluster", Summary: "1: 802 req/s; 2: 609 req/s, machine-bound", MachineBound: "2 replicas: the machine's CPUs were 99% busy"},
			With:    &experiments.Side{Setting: "cluster, global-lock", Summary: "1: 433 req/s; 2: 361 req/s"},
		}, {
			Name: "sharding", Claim: "sharding scales", Verdict: "waits", Waits: "sharding", Reason: "waits for sharding",
		}, {
			Name: "global-lock", Claim: "a lock is contention", Expected: "contention", Measure: "diagnose",
			Verdict: "none", Holds: &no, Reason: "diagnose calls both none", NotHere: "SQLite has one writer already",
			Without: &experiments.Side{Setting: "embedded", Summary: "none"}, With: &experiments.Side{Setting: "global-lock", Summary: "none"},
		}}}
}

func TestExperimentsInEveryForm(t *testing.T) {
	r := sampleExperiments()
	var text, js, page bytes.Buffer
	if err := (TextReporter{}).Experiments(&text, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"load average 3.5 at the start, unknown at the end",
		"| sync-mail | mail in the request \\| slows checkout | queue → sync-mail | checkout p50 2.00 ms | checkout p50 52 ms | performance | yes |",
		"| global-lock-replicas | a lock does not scale out | cluster → cluster, global-lock | 1: 802 req/s; 2: 609 req/s, machine-bound | 1: 433 req/s; 2: 361 req/s | machine-bound | no verdict: machine-bound |",
		"| sharding | sharding scales | – | waits for sharding | waits for sharding | waits for sharding | – |",
		"| sync-mail | sync-mail → queue | checkout.p50_ms 52 → 2 (-96%) | the mail leaves later |",
		"| global-lock | a lock is contention | embedded → global-lock | none | none | none | no: not on this system (why below) |",
		"- global-lock (diagnose, expected contention, 0 s): diagnose calls both none\n  - why the claim does not hold on this system: SQLite has one writer already\n",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	if err := (JSONReporter{}).Experiments(&js, r); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		LoadAfter   *float64         `json:"load_after"`
		Experiments []map[string]any `json:"experiments"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, js.String())
	}
	if doc.LoadAfter != nil || doc.Experiments[0]["holds"] != true || doc.Experiments[1]["holds"] != nil || doc.Experiments[1]["without"].(map[string]any)["machine_bound"] != "2 replicas: the machine's CPUs were 99% busy" || doc.Experiments[2]["holds"] != nil ||
		doc.Experiments[0]["with"].(map[string]any)["metrics"].(map[string]any)["checkout.p50_ms"] != 52.0 {
		t.Fatalf("JSON:\n%s", js.String())
	}
	if err := (HTMLReporter{}).Experiments(&page, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<!DOCTYPE html>", `<table id="experiments">`, "<td>mail in the request | slows checkout</td>", `<table id="tradeoffs">`, "<td>sync-mail → queue</td>", "the mail leaves later", "Why the claim does not hold on this system: SQLite has one writer already"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
