package threshold

import (
	"strings"
	"testing"
	"time"
)

func TestParseAcceptsTheDocumentedForms(t *testing.T) {
	tests := []struct {
		expr     string
		endpoint string
		metric   Metric
		pct      float64
		op       Op
		limit    float64
	}{
		{"p99<50ms", "", Percentile, 99, Less, float64(50 * time.Millisecond)},
		{"p50<=10ms", "", Percentile, 50, LessEqual, float64(10 * time.Millisecond)},
		{"p99.9 < 1.5s", "", Percentile, 99.9, Less, float64(1500 * time.Millisecond)},
		{"errors<0.1%", "", ErrorShare, 0, Less, 0.001},
		{"errors<10", "", ErrorCount, 0, Less, 10},
		{"rps>100", "", RPS, 0, Greater, 100},
		{"rps>=99.5/s", "", RPS, 0, GreaterEqual, 99.5},
		{"mean<5ms", "", Mean, 0, Less, float64(5 * time.Millisecond)},
		{"max<1s", "", Max, 0, Less, float64(time.Second)},
		{"checkout:p99<200ms", "checkout", Percentile, 99, Less, float64(200 * time.Millisecond)},
		{"GET http://h:80/x:errors<1%", "GET http://h:80/x", ErrorShare, 0, Less, 0.01},
	}
	for _, tt := range tests {
		th, err := Parse(tt.expr)
		if err != nil {
			t.Fatalf("%s: %v", tt.expr, err)
		}
		if th.Endpoint != tt.endpoint || th.Metric != tt.metric || th.Percentile != tt.pct || th.Op != tt.op || th.Limit != tt.limit {
			t.Errorf("%s: got %+v", tt.expr, th)
		}
	}
}

func TestParseExplainsBadExpressions(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"p99", "no comparison"},
		{"p99=50ms", "use <, <=, > or >="},
		{"p99<", "no value"},
		{"p99<50", "not a latency"},
		{"p99<-5ms", "not a latency"},
		{"p0<5ms", "not a percentile"},
		{"p101<5ms", "not a percentile"},
		{"pNaN<5ms", "not a percentile"},
		{"latency<5ms", "unknown metric"},
		{"<5ms", "no metric"},
		{"errors<150%", "share of requests"},
		{"errors<-1", "whole count"},
		{"errors<1.5", "whole count"},
		{"rps>fast", "rps needs a number"},
		{"rps>1e9", "rps needs a number"},
		{":p99<5ms", "empty endpoint"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.expr)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line mentioning %q", tt.expr, err, tt.want)
		}
	}
}

func measured(requests, errors int64, elapsed time.Duration, p99 time.Duration) Measured {
	return Measured{
		Requests: requests, Errors: errors, RPS: float64(requests) / elapsed.Seconds(),
		Quantile: func(p float64) time.Duration { return time.Duration(float64(p99) * p / 99) },
		Mean:     p99 / 2, Max: p99 * 2,
	}
}

func TestCheckSaysWhatWasMeasured(t *testing.T) {
	m := measured(1000, 20, 10*time.Second, 83200*time.Microsecond)
	tests := []struct {
		expr   string
		passed bool
		line   string
	}{
		{"p99<50ms", false, "threshold p99<50ms failed: p99 83.2ms"},
		{"p99<100ms", true, "threshold p99<100ms passed: p99 83.2ms"},
		{"p99<=83.2ms", true, "p99 83.2ms"},
		{"errors<1%", false, "threshold errors<1% failed: errors 2% (20 of 1000)"},
		{"errors<=2%", true, "errors 2%"},
		{"errors<21", true, "errors 20 of 1000"},
		{"rps>100", false, "threshold rps>100 failed: rps 100.0"},
		{"rps>=100", true, "rps 100.0"},
		{"mean<50ms", true, "mean 41.6ms"},
		{"max<100ms", false, "max 166.4ms"},
	}
	for _, tt := range tests {
		th, err := Parse(tt.expr)
		if err != nil {
			t.Fatal(err)
		}
		o := th.Check(m)
		if o.Passed != tt.passed || !strings.Contains(o.String(), tt.line) {
			t.Errorf("%s: %v (passed %v), want passed %v and %q", tt.expr, o, o.Passed, tt.passed, tt.line)
		}
	}
}

func TestNothingMeasuredFails(t *testing.T) {
	for _, expr := range []string{"p99<1s", "errors<100%", "rps>0"} {
		th, _ := Parse(expr)
		if o := th.Check(Measured{}); o.Passed {
			t.Errorf("%s passed with nothing measured: %v", expr, o)
		}
	}
}

func TestEvaluateChecksEndpointsByName(t *testing.T) {
	var l List
	for _, e := range []string{"p99<1s", "checkout:p99<50ms", "menu:errors<1%", "gone:p99<1s"} {
		if err := l.Set(e); err != nil {
			t.Fatal(err)
		}
	}
	endpoints := map[string]Measured{
		"checkout": measured(10, 0, time.Second, 200*time.Millisecond),
		"menu":     measured(10, 0, time.Second, time.Millisecond),
	}
	out := l.Evaluate(measured(20, 0, time.Second, 200*time.Millisecond), func(n string) (Measured, bool) {
		m, ok := endpoints[n]
		return m, ok
	})
	passed := []bool{true, false, true, false}
	for i, o := range out {
		if o.Passed != passed[i] {
			t.Errorf("%v: passed %v, want %v", o, o.Passed, passed[i])
		}
	}
	if f, ok := FirstFailure(out); !ok || f.Threshold.Endpoint != "checkout" {
		t.Errorf("first failure %v", f)
	}
	if !strings.Contains(out[3].String(), `no endpoint "gone"`) {
		t.Errorf("missing endpoint: %v", out[3])
	}
	if l.HasWholeRunErrors() {
		t.Error("an endpoint's error threshold counted as the whole run's")
	}
	if got := l.Endpoints(); len(got) != 3 {
		t.Errorf("endpoints %v", got)
	}
}

// FuzzParse: any input either parses into a threshold that checks without
// panicking, or is refused with a one-line reason.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"p99<50ms", "errors<0.1%", "rps>100", "checkout:p99<=200ms", "p99.9>=1s", "errors<5", "a:b:c<1", "p<", "max>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		th, err := Parse(expr)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n") && !strings.Contains(expr, "\n") {
				t.Fatalf("multi-line error for %q: %v", expr, err)
			}
			return
		}
		if th.Limit < 0 || th.Limit != th.Limit {
			t.Fatalf("%q parsed to a bad limit %v", expr, th.Limit)
		}
		if th.Metric == Percentile && (th.Percentile <= 0 || th.Percentile > 100) {
			t.Fatalf("%q parsed to percentile %v", expr, th.Percentile)
		}
		_ = th.Check(measured(10, 1, time.Second, time.Millisecond)).String()
		_ = th.Check(Measured{}).String()
	})
}
