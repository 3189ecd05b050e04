package main

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/perfscale/perfscale/loadlab/experiments"
	"github.com/perfscale/perfscale/loadlab/report"
)

// checkDoc tells, before anything runs, whether --doc's file can take the
// run: it exists, can be written, and has the markers once each.
func checkDoc(path string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := report.CheckDoc(doc); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("cannot be written: %w", err)
	}
	return f.Close()
}

// writeDoc puts the run between the markers of the document at path.
func writeDoc(path string, rep *experiments.Report, p report.Provenance) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var section bytes.Buffer
	if err := report.ExperimentsDoc(&section, rep, p); err != nil {
		return err
	}
	out, err := report.SpliceDoc(doc, section.Bytes())
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// provenance is what a document of the run says it came from.
// A shop binary without a record of its commit (built with -buildvcs=false,
// as this machine's Go does) is "unknown", unless loadlab built it here
// from the checkout.
func provenance(args []string, shop string, built bool) report.Provenance {
	p := report.Provenance{
		Command: strings.Join(append([]string{"loadlab", "experiments"}, args...), " "),
		Commit:  ownCommit(),
		Machine: machine(),
		Cores:   runtime.NumCPU(),
	}
	switch {
	case shop == "":
	case built:
		p.ShopCommit = orUnknown(checkoutCommit()) + ", built from the checkout by the run"
	default:
		p.ShopCommit = "unknown (the binary records no commit)"
		if info, err := buildinfo.ReadFile(shop); err == nil {
			if c := vcsCommit(info.Settings); c != "" {
				p.ShopCommit = c
			}
		}
	}
	return p
}

// ownCommit is the commit loadlab was built from: the build's own record,
// or else (go run, or a build with -buildvcs=false) the checkout's HEAD.
func ownCommit() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		if c := vcsCommit(info.Settings); c != "" {
			return c
		}
	}
	return checkoutCommit()
}

// checkoutCommit is the working directory's HEAD, and whether files git
// tracks differ from it.
func checkoutCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

func vcsCommit(settings []debug.BuildSetting) string {
	var rev, modified string
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return ""
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += " (with uncommitted changes)"
	}
	return rev
}

// machine names the CPU, its count and the memory, from /proc.
func machine() string {
	model := procField("/proc/cpuinfo", "model name")
	if model == "" {
		model = runtime.GOARCH
	}
	m := fmt.Sprintf("%s, %d CPUs", model, runtime.NumCPU())
	if mem := procField("/proc/meminfo", "MemTotal"); mem != "" {
		var kb float64
		if _, err := fmt.Sscanf(mem, "%f kB", &kb); err == nil {
			m += fmt.Sprintf(", %.0f GiB", kb/(1<<20))
		}
	}
	return m
}

// procField is the value of the first "key: value" line of file with key.
func procField(file, key string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
