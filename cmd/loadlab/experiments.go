package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/perfscale/perfscale/loadlab/experiments"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/report"
)

const experimentsUsage = `Usage: loadlab experiments [flags]

Runs the articles' claims as experiments: each starts a system without and
with one setting (an anti-pattern switch of the shop, a CPU size), measures
both the same way (one user's latency per endpoint, a diagnosis, a capacity
search over replica counts), and prints a table: claim | setting |
measured without | measured with | the lab's verdict | claim holds?, then
the trade-off table (what a setting improved, what it made worse, by how
much). Experiments that need what is not built yet (sharding) are listed
as waiting, never run.

The built-in list is the shop's (run it from the repository's root: its
cluster experiments call scripts/cluster.sh, as root for the CPU quotas);
--file runs your own list (the format is in docs/experiments.md). {shop}
in its commands is --shop: by default shop from PATH, or, in the
repository, one built with go build ./cmd/shop. The whole built-in list
takes about 15 minutes (--list estimates each experiment from its
settings).

A claim that does not hold is a finding, not a failure: the exit status
is 0 when every experiment was measured (1 with --check when a claim
did not hold), 3 when one could not be (its system did not start).

Examples:
  loadlab experiments --list
  loadlab experiments --only sync-mail,extra-hops
  loadlab experiments --json results.json --html results.html
  loadlab experiments --file my-experiments.yaml --shop ./shop --json -
  loadlab experiments --shop ./shop --json run.json --doc docs/experiments.md

Flags:
`

type experimentsFlags struct {
	fs                    *flag.FlagSet
	file, only, shop, doc *string
	list, check           *bool
	readyTimeout          *time.Duration
	client                *string
	outputs               *report.Outputs
}

func newExperimentsFlags(stdout io.Writer) *experimentsFlags {
	fs := newFlagSet("experiments", experimentsUsage, stdout)
	return &experimentsFlags{
		fs:           fs,
		file:         fs.String("file", "", "a YAML file of experiments; default the built-in list of the shop"),
		only:         fs.String("only", "", "run only these experiments, comma-separated names"),
		shop:         fs.String("shop", "", "the shop binary that replaces {shop}; default shop from PATH, or built from ./cmd/shop"),
		doc:          fs.String("doc", "", "write the run, with its date, commits, machine and load average, into this Markdown file between its lines "+report.DocBegin+" and "+report.DocEnd+" (docs/experiments.md has them)"),
		list:         fs.Bool("list", false, "print the experiments with their claims and expected verdicts, run none"),
		check:        fs.Bool("check", false, "exit 1 when a measured claim does not hold"),
		readyTimeout: fs.Duration("ready-timeout", 90*time.Second, "how long a started system may take to answer"),
		client:       fs.String("client", string(load.ClientFastHTTP), "HTTP client: fasthttp or nethttp"),
		outputs:      outputFlags(fs),
	}
}

func runExperiments(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newExperimentsFlags(stdout)
	pos, err := parseArgs(f.fs, args)
	if err != nil {
		return err
	}
	exps, err := f.selected(pos)
	if err != nil {
		return fmt.Errorf("experiments: %v", err)
	}
	human := f.outputs.Human(stdout, stderr)
	if *f.list {
		var total time.Duration
		for _, e := range exps {
			what := e.Measure + ", expected " + e.Expected + ", about " + e.Estimate().Round(time.Second).String()
			if e.Waits != "" {
				what = "waits for " + e.Waits
			}
			total += e.Estimate()
			fmt.Fprintf(human, "%-24s %s (%s)\n", e.Name, e.Claim, what)
		}
		fmt.Fprintf(human, "about %s on a quiet machine, from the settings\n", total.Round(time.Second))
		return nil
	}
	shop, built, cleanup, err := shopBinary(ctx, *f.shop, exps, stderr)
	if err != nil {
		return fmt.Errorf("experiments: %w", err)
	}
	markStarted(ctx)
	defer cleanup()
	r := &experiments.Runner{Shop: shop, ReadyTimeout: *f.readyTimeout, Cores: float64(runtime.NumCPU()), Log: stderr, Client: load.Client(*f.client)}
	rep, err := r.Run(ctx, exps)
	if err != nil {
		return fmt.Errorf("experiments: %v", err)
	}
	if err := (report.TextReporter{}).Experiments(human, rep); err != nil {
		return fmt.Errorf("experiments: %v", err)
	}
	if err := f.outputs.Write(stdout, func(r report.Reporter, w io.Writer) error { return r.Experiments(w, rep) }); err != nil {
		return fmt.Errorf("experiments: %v", err)
	}
	if *f.doc != "" {
		if err := writeDoc(*f.doc, rep, provenance(args, shop, built)); err != nil {
			return fmt.Errorf("experiments: --doc %s: %v", *f.doc, err)
		}
	}
	return experimentsOutcome(rep, *f.check)
}

// selected reads the list and keeps --only's, checking every flag first.
func (f *experimentsFlags) selected(pos []string) ([]experiments.Experiment, error) {
	switch {
	case len(pos) > 0:
		return nil, fmt.Errorf("unexpected argument %q (the experiments come from --file or the built-in list)", pos[0])
	case *f.readyTimeout <= 0:
		return nil, fmt.Errorf("--ready-timeout must be positive, got %v", *f.readyTimeout)
	}
	switch load.Client(*f.client) {
	case load.ClientFastHTTP, load.ClientNetHTTP:
	default:
		return nil, fmt.Errorf("unknown --client %q (want fasthttp or nethttp)", *f.client)
	}
	if err := f.outputs.Check(); err != nil {
		return nil, err
	}
	if *f.doc != "" {
		if err := checkDoc(*f.doc); err != nil {
			return nil, fmt.Errorf("--doc %s: %v", *f.doc, err)
		}
	}
	if *f.shop != "" {
		if _, err := os.Stat(*f.shop); err != nil {
			return nil, fmt.Errorf("--shop: %v", err)
		}
	}
	list := experiments.Builtin()
	if *f.file != "" {
		src, err := os.ReadFile(*f.file)
		if err != nil {
			return nil, fmt.Errorf("--file: %v", err)
		}
		if list, err = experiments.Parse(src); err != nil {
			return nil, fmt.Errorf("--file %s: %v", *f.file, err)
		}
	}
	return list.Select(*f.only)
}

// experimentsOutcome is the exit: 3 when an experiment could not be
// measured, 1 with check when a claim did not hold.
func experimentsOutcome(rep *experiments.Report, check bool) error {
	var notMeasured, notHeld []string
	for _, e := range rep.Experiments {
		switch {
		case e.Error != "":
			notMeasured = append(notMeasured, e.Name)
		case e.Holds != nil && !*e.Holds:
			notHeld = append(notHeld, e.Name)
		}
	}
	if len(notMeasured) > 0 {
		return notRun(fmt.Errorf("experiments: not measured: %s (the table says why)", strings.Join(notMeasured, ", ")))
	}
	if check && len(notHeld) > 0 {
		return failed(fmt.Errorf("experiments: the claim does not hold here: %s", strings.Join(notHeld, ", ")))
	}
	return nil
}

// shopBinary is what {shop} becomes: --shop, shop from PATH, or a build
// of ./cmd/shop (removed by cleanup). It is not needed when no command
// of the experiments names {shop}. built says it was built here, from
// the checkout.
func shopBinary(ctx context.Context, given string, exps []experiments.Experiment, stderr io.Writer) (path string, built bool, cleanup func(), err error) {
	nothing := func() {}
	if given != "" {
		abs, err := filepath.Abs(given)
		return abs, false, nothing, err
	}
	if !usesShop(exps) {
		return "", false, nothing, nil
	}
	if p, err := exec.LookPath("shop"); err == nil {
		return p, false, nothing, nil
	}
	if _, err := os.Stat(filepath.Join("cmd", "shop")); err != nil {
		return "", false, nothing, badInput(errors.New("no shop binary: give --shop PATH, put shop in PATH, or run from the repository's root"))
	}
	dir, err := os.MkdirTemp("", "loadlab-shop-")
	if err != nil {
		return "", false, nothing, err
	}
	bin := filepath.Join(dir, "shop")
	fmt.Fprintln(stderr, "experiments: building the shop (go build ./cmd/shop)")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/shop")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", false, nothing, notRun(fmt.Errorf("go build ./cmd/shop: %v: %s", err, strings.TrimSpace(string(out))))
	}
	return bin, true, func() { os.RemoveAll(dir) }, nil
}

func usesShop(exps []experiments.Experiment) bool {
	for _, e := range exps {
		for _, s := range []*experiments.Setting{e.Without, e.With} {
			if s != nil && strings.Contains(s.Serve+s.Up+s.Down, "{shop}") {
				return true
			}
		}
	}
	return false
}
