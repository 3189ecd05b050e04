package report

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/usl"
)

func sampleReport(t *testing.T) *diagnose.Report {
	t.Helper()
	r := &diagnose.Report{Target: "http://127.0.0.1:8080/v1/menu", SLO: 40 * time.Millisecond, SaturationSource: "pid", Kind: diagnose.KindContention,
		Scalability: true, Evidence: []string{"contention: a serial section of about 5.9 ms <per request>"}, Warnings: []string{"a warning"}}
	r.Baseline = diagnose.Step{Concurrency: 1, P50: 5 * time.Millisecond, P99: 6 * time.Millisecond, Requests: 40}
	var pts []usl.Point
	for i, n := range []int{1, 2, 4, 8, 16} {
		x := []float64{170, 172, 171, 170, 169}[i]
		r.Steps = append(r.Steps, diagnose.Step{Concurrency: n, ThroughputRPS: x, P50: time.Duration(n) * 5 * time.Millisecond,
			P99: time.Duration(n) * 6 * time.Millisecond, Requests: 100, ServerCPUCores: 0.05, GeneratorCPUCores: 0.02})
		r.Efficiency = append(r.Efficiency, x/(float64(n)*170))
		pts = append(pts, usl.Point{N: float64(n), X: x})
	}
	r.Steps[2].ServerCPUCores = math.NaN()
	fit, err := usl.FitPoints(pts)
	if err != nil {
		t.Fatal(err)
	}
	r.Fit, r.FitOK = fit, true
	return r
}

func TestPageIsSelfContainedAndEscaped(t *testing.T) {
	var b bytes.Buffer
	if err := (HTMLReporter{}).Diagnosis(&b, sampleReport(t)); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if regexp.MustCompile(`(?i)<(script|img|link|iframe)[^>]+(src|href)=`).MatchString(page) {
		t.Fatal("the page loads an external resource")
	}
	for _, want := range []string{`id="plot-throughput"`, `id="plot-latency"`, "</svg>USL fit</span>", "</svg>p99</span>", "</svg>linear scaling</span>", "problem: contention", "&lt;per request&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

// The page as a person sees it: rendered by Chromium, with both plots drawn
// and no script errors.
func TestPageRendersInHeadlessChromium(t *testing.T) {
	var b bytes.Buffer
	if err := (HTMLReporter{}).Diagnosis(&b, sampleReport(t)); err != nil {
		t.Fatal(err)
	}
	checkInChromium(t, b.Bytes(), 2, "1000,1800")
}

// checkInChromium renders a page in headless Chromium and checks that its
// self-check saw every plot drawn and no script error. With
// REPORT_SCREENSHOT=file.png it keeps a screenshot to look at.
func checkInChromium(t *testing.T, page []byte, plots int, window string) {
	t.Helper()
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
	path := filepath.Join(dir, "report.html")
	if err := os.WriteFile(path, page, 0o600); err != nil {
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
	if want := fmt.Sprintf(`data-plots="%d/%d"`, plots, plots); !strings.Contains(string(dom), `data-rendered="ok"`) || !strings.Contains(string(dom), want) {
		m := regexp.MustCompile(`<body[^>]*>`).FindString(string(dom))
		t.Fatalf("the page did not render its plots: %s\n%s", m, stderr.String())
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "CONSOLE") && (strings.Contains(line, "Uncaught") || strings.Contains(line, "ERROR")) {
			t.Errorf("console error: %s", line)
		}
	}
	if out := os.Getenv("REPORT_SCREENSHOT"); out != "" {
		shot := exec.Command(browser, append(args, "--screenshot="+out, "--window-size="+window, "file://"+path)...)
		if b, err := shot.CombinedOutput(); err != nil {
			t.Fatalf("screenshot: %v\n%s", err, b)
		}
	}
}
