package report

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
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
			P99: time.Duration(20+5*i) * time.Millisecond, Bottleneck: "the 4 shop replicas CPU-bound <at quota>"})
		pts = append(pts, usl.Point{N: float64(n), X: x})
	}
	if vertical {
		for i, c := range []float64{0.25, 0.5, 1} {
			x := []float64{400, 700, 1100}[i]
			r.Vertical = append(r.Vertical, scaleout.Step{Replicas: 1, CPU: c, CapacityRPS: x, Speedup: x / 400, Efficiency: x / 400 / (c / 0.25),
				P99: 30 * time.Millisecond, Bottleneck: "shop CPU-bound"})
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
		if err := RenderScaleout(&b, sampleScaleout(t, vertical)); err != nil {
			t.Fatal(err)
		}
		page := b.String()
		if regexp.MustCompile(`(?i)<(script|img|link|iframe)[^>]+(src|href)=`).MatchString(page) {
			t.Fatal("the page loads an external resource")
		}
		want := []string{`id="plot-capacity"`, `id="plot-efficiency"`, `data-name="the articles&#39; invented 90/80/70%"`, "&lt;at quota&gt;", "<td>90%</td>"}
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
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed; .ci/run installs it (apt-get install chromium)")
		}
		t.Skip("chromium not installed (apt-get install chromium); the page is not checked in a browser")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "scaleout.html")
	var b bytes.Buffer
	if err := RenderScaleout(&b, sampleScaleout(t, true)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + filepath.Join(dir, "profile"), "--enable-logging=stderr", "--v=0",
		"--virtual-time-budget=2000"}
	cmd := exec.Command(browser, append(args, "--dump-dom", "file://"+path)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(string(dom), `data-rendered="ok"`) || !strings.Contains(string(dom), `data-plots="3/3"`) {
		m := regexp.MustCompile(`<body[^>]*>`).FindString(string(dom))
		t.Fatalf("the page did not render its plots: %s\n%s", m, stderr.String())
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "CONSOLE") && (strings.Contains(line, "Uncaught") || strings.Contains(line, "ERROR")) {
			t.Errorf("console error: %s", line)
		}
	}
	if out := os.Getenv("REPORT_SCREENSHOT"); out != "" {
		shot := exec.Command(browser, append(args, "--screenshot="+out, "--window-size=1000,2200", "file://"+path)...)
		if b, err := shot.CombinedOutput(); err != nil {
			t.Fatalf("screenshot: %v\n%s", err, b)
		}
	}
}
