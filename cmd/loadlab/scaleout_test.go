package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/report"
	"github.com/perfscale/perfscale/loadlab/scaleout"
	"github.com/perfscale/perfscale/loadlab/scaleout/testsystem"
)

// The test binary doubles as the test system's scale and down commands,
// and as loadlab itself for the Ctrl-C test.
func TestMain(m *testing.M) {
	if testsystem.Main() {
		return
	}
	if hold := os.Getenv(lockServerEnv); hold != "" {
		serveLock(hold)
		return
	}
	if os.Getenv("LOADLAB_TEST_MAIN") == "1" {
		os.Args = append([]string{"loadlab"}, strings.Fields(os.Getenv("LOADLAB_TEST_ARGS"))...)
		if up := os.Getenv("LOADLAB_SCALE_CMD"); up != "" {
			os.Args = append(os.Args, "--scale-cmd", up, "--down-cmd", os.Getenv("LOADLAB_DOWN_CMD"))
		}
		main()
		os.Exit(0)
	}
	// The help examples and the table test at once: their systems serve
	// on virtual clocks and take little CPU (two at a time, the package
	// took 250 s at a load average of 27, 213 s of it these five).
	testsystem.MeasureInParallel(8)
	os.Exit(m.Run())
}

func TestScaleoutRejectsBadInvocations(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"scaleout"}, "--scale-cmd: give a command with {n}"},
		{[]string{"scaleout", "--scale-cmd", "up", "--down-cmd", "down"}, "must contain {n}"},
		{[]string{"scaleout", "--scale-cmd", "up {n}"}, "--down-cmd: give a command"},
		{[]string{"scaleout", "--scale-cmd", "up {n}", "--down-cmd", "d", "--replicas", "1,x"}, `"x" is not a replica count`},
		{[]string{"scaleout", "--scale-cmd", "up {n}", "--down-cmd", "d", "--replicas", "4,2"}, "--replicas: counts must be positive and ascending"},
		{[]string{"scaleout", "--scale-cmd", "up {n}", "--down-cmd", "d", "--cpus", "0.5"}, "--scale-cmd: must contain {cpu}"},
		{[]string{"scaleout", "--scale-cmd", "up {n} {cpu}", "--down-cmd", "d"}, "--cpus: give the CPU sizes"},
		{[]string{"scaleout", "--scale-cmd", "up {n} {cpu}", "--down-cmd", "d", "--cpus", "0.5,-1"}, "--cpus: sizes must be positive"},
		{[]string{"scaleout", "--scale-cmd", "up {n}", "--down-cmd", "d", "--slo", "0s"}, "--slo: must be positive"},
		{[]string{"scaleout", "--scale-cmd", "up {n}", "--down-cmd", "d", "--probe-duration", "0s"}, "--probe-duration: must be positive"},
		{[]string{"scaleout", "--scale-cmd", "up {n}", "--down-cmd", "d", "--replicas", "0,2"}, "--replicas: counts must be positive"},
		{[]string{"scaleout", "--scale-cmd", "up {n}", "--down-cmd", "d", "--start-rate", "-5"}, "--start-rate: must be a positive number"},
		{[]string{"scaleout", "--scale-cmd", "up {n}", "--down-cmd", "d", "--users", "-1"}, "--users: must not be negative"},
		{[]string{"scaleout", "--scale-cmd", "up {n}", "--down-cmd", "d", "--scenario", "nope.yaml"}, "scenario"},
		{[]string{"scaleout", "--scale-cmd", "up {n}", "--down-cmd", "d", "--scenario", "shop", "--path", "/x"}, "--path applies without --scenario"},
		{[]string{"scaleout", "--scale-cmd", "up {n}", "--down-cmd", "d", "--client", "curl"}, "unknown --client"},
		{[]string{"scaleout", "--scale-cmd", "up {n}", "--down-cmd", "d", "http://x/"}, "the URL comes from the scale command"},
		{[]string{"scaleout", "--scale-cmd", "echo not-a-url {n}", "--down-cmd", "true"}, "last line must be the URL"},
		{[]string{"scaleout", "--scale-cmd", ": {n}", "--down-cmd", "true"}, "scale command for 1 replica printed nothing; its last line must be the URL to load"},
		{[]string{"scaleout", "--scale-cmd", "exit 3 {n}", "--down-cmd", "true"}, "scale command for 1 replica"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := loadlab(tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") || exitCode(err) == 0 {
				t.Fatalf("err = %v, want a one-line error containing %q", err, tt.want)
			}
		})
	}
	out, errOut, err := loadlab("scaleout", "--help")
	if err != errUsageShown || !strings.Contains(out+errOut, "Examples:") {
		t.Fatalf("--help: %v", err)
	}
}

// Flags the search would ignore, or could not use, are refused before
// the scale command runs (exit 2): --users without a scenario ran a whole
// search as if it had not been given; --path without its / failed only
// after the first scale-up, with exit 3.
func TestScaleoutRefusesUnusableFlagsBeforeScaling(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "scaled")
	up := "touch " + marker + "; : {n}; echo http://127.0.0.1:1/"
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--users", "5"}, "scaleout: --users applies with --scenario only"},
		{[]string{"--path", "v1/menu"}, `scaleout: --path must start with /, such as /v1/menu, got "v1/menu"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := append([]string{"scaleout", "--scale-cmd", up, "--down-cmd", "true", "--replicas", "1", "--ready-timeout", "1s"}, tt.args...)
			_, _, err := loadlab(args...)
			if err == nil || err.Error() != tt.want || exitCode(err) != exitBadInput {
				t.Fatalf("err = %v (exit %d), want %q, exit %d", err, exitCode(err), tt.want, exitBadInput)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the scale command ran")
			}
		})
	}
}

// A URL that answers 404 to everything stops the run at once, as an
// unreachable one does: one line naming the status, exit 3, the down
// command run. It searched every rate down to 2 req/s on 100% errors and
// exited 0 with a table of 0/s.
func TestScaleoutOnAURLThatAnswers404Stops(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	marker := filepath.Join(t.TempDir(), "down")
	_, _, err := loadlab("scaleout", "--scale-cmd", ": {n}; echo "+srv.URL+"/nope", "--down-cmd", "touch "+marker,
		"--replicas", "1", "--probe-duration", "200ms")
	want := "scaleout: 1 replica: all 20 of one user's requests failed with a client error (GET /nope got 404 Not Found ×20"
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") || exitCode(err) != exitNotRun {
		t.Fatalf("err = %v (exit %d), want one line containing %q, exit %d", err, exitCode(err), want, exitNotRun)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the down command did not run: %v", err)
	}
}

// The whole command against the test system: the table, --json in the
// documented shape, --html, and the down command run once.
func TestScaleoutWritesTableJSONAndHTML(t *testing.T) {
	if testing.Short() {
		t.Skip("measures a small system; skipped with -short")
	}
	// Beside the help examples: a virtual-clock system, little CPU.
	t.Parallel()
	o := testsystem.Options{State: t.TempDir(), ReplicaEvery: 20 * time.Millisecond}
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "s.json"), filepath.Join(dir, "s.html")
	out, _, err := loadlab("scaleout", "--scale-cmd", testsystem.UpCommand(o), "--down-cmd", testsystem.DownCommand(o),
		"--replicas", "1,2", "--slo", "200ms", "--probe-duration", "1s", "--start-rate", "20", "--path", "/work",
		"--json", jsonPath, "--html", htmlPath)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if testsystem.DownRan(o.State) != 1 || len(testsystem.Running(o.State)) > 0 {
		t.Fatalf("down ran %d times, %v left running", testsystem.DownRan(o.State), testsystem.Running(o.State))
	}
	for _, want := range []string{"replicas", "capacity", "speed-up", "efficiency", "bottleneck"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SLO   *float64 `json:"slo_ms"`
		Steps []struct {
			Replicas   *int     `json:"replicas"`
			Capacity   *float64 `json:"capacity_rps"`
			Speedup    *float64 `json:"speedup"`
			Efficiency *float64 `json:"efficiency"`
			P99        *float64 `json:"p99_ms"`
			Bottleneck *string  `json:"bottleneck"`
		} `json:"steps"`
		USL *struct {
			Sigma, Kappa, Lambda, R2 *float64
		} `json:"usl"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SLO == nil || *doc.SLO != 200 || len(doc.Steps) != 2 {
		t.Fatalf("json does not have the documented shape:\n%s", b)
	}
	for _, s := range doc.Steps {
		if s.Replicas == nil || s.Capacity == nil || s.Speedup == nil || s.Efficiency == nil || s.P99 == nil || s.Bottleneck == nil ||
			*s.Efficiency > 1.5 || *s.Capacity < 0 {
			t.Fatalf("step lacks a field or has efficiency as a percentage:\n%s", b)
		}
	}
	// Two points cannot fit three parameters: "usl" is null, and the
	// table says why.
	if doc.USL != nil || !strings.Contains(out, "no USL fit") {
		t.Fatalf("usl with two points: %s\n%s", b, out)
	}
	page, err := os.ReadFile(htmlPath)
	if err != nil || !strings.Contains(string(page), `id="plot-capacity"`) || !strings.Contains(string(page), `id="plot-efficiency"`) {
		t.Fatalf("html report missing plots: %v", err)
	}
}

// Ctrl-C in the middle of a search: loadlab stops, the down command runs,
// nothing is left behind.
func TestScaleoutCtrlCRunsTheDownCommand(t *testing.T) {
	o := testsystem.Options{State: t.TempDir(), ReplicaEvery: 5 * time.Millisecond}
	cmd := exec.Command(os.Args[0])
	// The commands are passed whole through the environment, to keep their
	// spaces.
	cmd.Env = append(os.Environ(), "LOADLAB_TEST_MAIN=1", "LOADLAB_TEST_ARGS=scaleout --replicas 1,2,4 --probe-duration 2s",
		"LOADLAB_SCALE_CMD="+testsystem.UpCommand(o), "LOADLAB_DOWN_CMD="+testsystem.DownCommand(o))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until a probe has run (the progress line), then interrupt.
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "req/s: p99") {
	}
	if len(testsystem.Running(o.State)) == 0 {
		t.Fatal("the system was not up when interrupted")
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
	}
	err = cmd.Wait()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() == 0 {
		t.Fatalf("interrupted loadlab exited with %v, want a failure", err)
	}
	if testsystem.DownRan(o.State) != 1 || len(testsystem.Running(o.State)) > 0 {
		t.Fatalf("after Ctrl-C the down command ran %d times and %v are left", testsystem.DownRan(o.State), testsystem.Running(o.State))
	}
}

// A table not to be trusted says why above it.
func TestScaleoutTablePrintsItsWarnings(t *testing.T) {
	r := &scaleout.Result{Warnings: []string{"not to be trusted: 2 replicas measured 1098% efficiency"},
		Steps: []scaleout.Step{{Replicas: 1, CapacityRPS: 24}, {Replicas: 2, CapacityRPS: 527}}}
	var out strings.Builder
	if err := (report.TextReporter{}).Scaleout(&out, r); err != nil {
		t.Fatal(err)
	}
	table := strings.Index(out.String(), "replicas")
	warning := strings.Index(out.String(), "WARNING: not to be trusted: 2 replicas measured 1098% efficiency")
	if warning < 0 || warning > table {
		t.Fatalf("output:\n%s\nwant the warning above the table", out.String())
	}
}

// Each example of scaleout --help runs as printed, against the test
// system: its scale and down commands stand in for the cluster's (or
// kubectl's), {cpu} kept where the example has it, the output files go
// to a temporary directory, the probes are shortened and the SLO widened;
// every other flag is the example's own. The examples run side by side:
// the test system's replicas serve on a virtual clock and take little CPU.
func TestScaleoutHelpExamplesRun(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the test system once per example; skipped with -short")
	}
	// Beside the table test, after the sequential tests: they weigh and
	// unweigh this process for themselves.
	t.Parallel()
	// The lab (this process and the virtual-clock systems it starts) at the
	// test system's CPU weight, for these and the table test beside them:
	// at the default weight, at a load average of 36, each count's probes
	// were starved and measured again, and one example took six minutes.
	testsystem.WeighTest(t)
	examples := helpExamples(t, scaleoutUsage)
	if len(examples) < 4 {
		t.Fatalf("found %d examples in the usage text", len(examples))
	}
	// --agents gets two agents of this process.
	agents, sent := inProcessAgents(t, 2, nil)
	for i, args := range examples {
		t.Run(fmt.Sprint(i+1), func(t *testing.T) {
			t.Parallel()
			o := testsystem.Options{State: t.TempDir(), ReplicaEvery: 10 * time.Millisecond}
			dir := t.TempDir()
			for j := 1; j < len(args); j++ {
				switch args[j-1] {
				case "--scale-cmd":
					up := testsystem.UpCommand(o)
					if strings.Contains(args[j], "{cpu}") {
						up = "echo {cpu} >/dev/null; " + up
					}
					args[j] = up
				case "--down-cmd":
					args[j] = testsystem.DownCommand(o)
				case "--json", "--html":
					args[j] = filepath.Join(dir, filepath.Base(args[j]))
				case "--agents":
					args[j] = strings.Join(agents, ",")
				}
			}
			// Shorter probes than the examples' 3 s, and an SLO a busy
			// machine meets: the flags are checked, not the capacities.
			// (With the examples' 50 ms, at a load average of 28 each
			// count's search went down to 8 req/s through drains of up
			// to 30 s, four minutes an example.)
			out, errOut, err := loadlab(append(args[1:], "--probe-duration", "500ms", "--slo", "500ms")...)
			if err != nil {
				t.Fatalf("%v: %v\n%s\n%s", args, err, out, errOut)
			}
			if !strings.Contains(out, "efficiency") || testsystem.DownRan(o.State) != 1 {
				t.Fatalf("%v: no table, or down ran %d times:\n%s", args, testsystem.DownRan(o.State), out)
			}
			if slices.Contains(args, "--agents") && (sent[0].Load() == 0 || sent[1].Load() == 0) {
				t.Fatalf("%v: the agents sent %d and %d requests", args, sent[0].Load(), sent[1].Load())
			}
			t.Logf("%s", out)
		})
	}
}

// helpExamples are the usage text's example command lines, split into
// arguments by the shell, as a user's shell would split them.
func helpExamples(t *testing.T, usage string) [][]string {
	t.Helper()
	_, text, _ := strings.Cut(usage, "Examples:\n")
	text, _, _ = strings.Cut(text, "\n\n")
	var out [][]string
	for _, line := range strings.Split(strings.ReplaceAll(text, "\\\n", " "), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		b, err := exec.Command("sh", "-c", `for a in `+line+`; do printf '%s\0' "$a"; done`).Output()
		if err != nil {
			t.Fatalf("the shell cannot split example %q: %v", line, err)
		}
		out = append(out, strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"))
	}
	return out
}
