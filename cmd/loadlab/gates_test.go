package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/scaleout"
	"github.com/perfscale/perfscale/loadlab/threshold"
)

func thresholds(t *testing.T, exprs ...string) threshold.List {
	t.Helper()
	var l threshold.List
	for _, e := range exprs {
		if err := l.Set(e); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func TestDiagnoseThresholdsGateTheDiagnosis(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	args := []string{"diagnose", "--max-concurrency", "2", "--step-duration", "200ms", "--baseline-requests", "10", "--baseline-duration", "1s"}
	out, _, err := loadlab(append(args, "--threshold", "p99<1h", "--threshold", "errors<1%", srv.URL)...)
	if err != nil {
		t.Fatalf("thresholds that hold failed: %v", err)
	}
	if !strings.Contains(out, "ok   p99<1h: p99 ") || !strings.Contains(out, "ok   errors<1%: errors 0% (0 of ") {
		t.Errorf("output lacks the thresholds:\n%s", out)
	}
	_, _, err = loadlab(append(args, "--threshold", "rps>99999999", srv.URL)...)
	if exitCode(err) != exitFailed || !strings.HasPrefix(err.Error(), "threshold rps>99999999 failed: rps ") {
		t.Fatalf("err %v", err)
	}
	_, _, err = loadlab(append(args, "--threshold", "p99<", srv.URL)...)
	if exitCode(err) != exitBadInput {
		t.Fatalf("err %v", err)
	}
}

func TestScaleoutThresholdsCheckEveryReplicaCount(t *testing.T) {
	res := &scaleout.Result{Steps: []scaleout.Step{
		{Replicas: 1, CapacityRPS: 600, P99: 20 * time.Millisecond},
		{Replicas: 2, CapacityRPS: 450, P99: 40 * time.Millisecond},
	}}
	outcomes, err := scaleoutThresholds(thresholds(t, "rps>500", "p99<50ms"), res)
	if len(outcomes) != 4 || exitCode(err) != exitFailed || err.Error() != "threshold rps>500 failed: rps 450.0 at 2 replicas" {
		t.Fatalf("outcomes %v, err %v", outcomes, err)
	}
	if _, err := scaleoutThresholds(thresholds(t, "rps>400", "p99<=40ms"), res); err != nil {
		t.Fatalf("thresholds that hold failed: %v", err)
	}
	// One replica is said in the singular ("at 1 replicas" before).
	if _, err := scaleoutThresholds(thresholds(t, "rps>700"), res); err == nil || err.Error() != "threshold rps>700 failed: rps 600.0 at 1 replica" {
		t.Fatalf("err %v", err)
	}
	for _, bad := range []string{"p50<10ms", "errors<1%", "menu:rps>5"} {
		_, _, err := loadlab("scaleout", "--scale-cmd", "up {n}", "--down-cmd", "d", "--threshold", bad)
		if exitCode(err) != exitBadInput || !strings.Contains(err.Error(), "--threshold "+bad) {
			t.Errorf("%s: err %v", bad, err)
		}
	}
}
