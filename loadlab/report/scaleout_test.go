package report

import (
	"bytes"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/scaleout"
	"github.com/perfscale/perfscale/loadlab/usl"
)

func sampleScaleout(t *testing.T, vertical bool) *scaleout.Result {
	t.Helper()
	r := &scaleout.Result{SLO: 50 * time.Millisecond}
	var pts []usl.Point
	for i, n := range []int{1, 2, 4} {
		x := []float64{400, 760, 1240}[i]
		r.Steps = append(r.Steps, scaleout.Step{Replicas: n, CPU: 0.25, CapacityRPS: x, Speedup: x / 400, Efficiency: x / 400 / float64(n),
			P99: time.Duration(20+5*i) * time.Millisecond, Found: true, Bottleneck: "the 4 shop replicas CPU-bound <at quota>"})
		pts = append(pts, usl.Point{N: float64(n), X: x})
	}
	if vertical {
		for i, c := range []float64{0.25, 0.5, 1} {
			x := []float64{400, 700, 1100}[i]
			r.Vertical = append(r.Vertical, scaleout.Step{Replicas: 1, CPU: c, CapacityRPS: x, Speedup: x / 400, Efficiency: x / 400 / (c / 0.25),
				P99: 30 * time.Millisecond, Found: true, Bottleneck: "shop CPU-bound"})
		}
	} else {
		for i := range r.Steps {
			r.Steps[i].CPU = math.NaN()
		}
	}
	fit, err := usl.FitPoints(pts)
	if err != nil {
		t.Fatal(err)
	}
	r.Fit, r.FitOK = fit, true
	return r
}

func TestScaleoutPageIsSelfContained(t *testing.T) {
	for _, vertical := range []bool{false, true} {
		var b bytes.Buffer
		if err := (HTMLReporter{}).Scaleout(&b, sampleScaleout(t, vertical)); err != nil {
			t.Fatal(err)
		}
		page := b.String()
		if regexp.MustCompile(`(?i)<(script|img|link|iframe)[^>]+(src|href)=`).MatchString(page) {
			t.Fatal("the page loads an external resource")
		}
		want := []string{`id="plot-capacity"`, `id="plot-efficiency"`, "</svg>the articles&#39; invented 90/80/70%</span>", "&lt;at quota&gt;", "<td>90%</td>"}
		if vertical {
			want = append(want, `id="plot-cpu"`, "1 cores: 4 replicas of 0.25 give 1240 req/s; one replica of 1 gives 1100 req/s")
		}
		for _, w := range want {
			if !strings.Contains(page, w) {
				t.Errorf("page (vertical %v) lacks %s", vertical, w)
			}
		}
	}
}

// The page as a person sees it, in Chromium: three plots drawn, no script
// errors. REPORT_SCREENSHOT=file.png keeps a screenshot to look at.
func TestScaleoutPageRendersInHeadlessChromium(t *testing.T) {
	var b bytes.Buffer
	if err := (HTMLReporter{}).Scaleout(&b, sampleScaleout(t, true)); err != nil {
		t.Fatal(err)
	}
	checkInChromium(t, b.Bytes(), 3, "1000,2200")
}
