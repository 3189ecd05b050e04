// Command loadlab generates HTTP load and diagnoses what it measures:
// whether a service has a performance problem, a scalability problem, both
// or neither.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/perfscale/perfscale/loadlab/report"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsageShown) {
			fmt.Fprintf(os.Stderr, "loadlab: %v\n", err)
		}
		os.Exit(exitCode(err))
	}
}

// Exit codes, documented in the usage text and docs.
const (
	exitOK       = 0 // the run happened and passed its thresholds
	exitFailed   = 1 // the run happened and failed a threshold or the error limit
	exitBadInput = 2 // bad command line, flag value, URL, scenario or input file
	exitNotRun   = 3 // the run could not happen or finish (the generator failed, output not written)
)

// errUsageShown means help was printed on request; it exits 0.
var errUsageShown = errors.New("usage shown")

// exitError carries its exit code with the one-line message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// badInput marks an error in what the user gave (exit 2).
func badInput(err error) error { return &exitError{exitBadInput, err} }

// failed marks a run that happened but did not pass (exit 1).
func failed(err error) error { return &exitError{exitFailed, err} }

// notRun marks a run that could not happen or finish (exit 3).
func notRun(err error) error { return &exitError{exitNotRun, err} }

// exitCode maps an error to the process's exit code. Errors not marked
// otherwise are bad input until the command has started sending load
// (see markStarted), and a run that could not finish after that.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil, errors.Is(err, errUsageShown):
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, new(*startedError)):
		return exitNotRun
	}
	return exitBadInput
}

// startedError marks errors that came after the command started sending
// load; run adds it, so commands only call markStarted.
type startedError struct{ err error }

func (e *startedError) Error() string { return e.err.Error() }
func (e *startedError) Unwrap() error { return e.err }

type startedKey struct{}

// markStarted records that the command is about to send load: checking
// its input is over, and an error from here on is not the user's input.
func markStarted(ctx context.Context) {
	if p, ok := ctx.Value(startedKey{}).(*bool); ok {
		*p = true
	}
}

const usage = `loadlab generates HTTP load and diagnoses what it measures.

Usage:
  loadlab run       [flags] URL | --scenario FILE|shop|shop-writes | --targets FILE|-
                                                         generate load, report latency and throughput
  loadlab diagnose  [flags] URL                          baseline + concurrency ramp + USL fit + verdict
  loadlab scaleout  --scale-cmd CMD --down-cmd CMD ...   capacity and scaling efficiency at 1, 2, 4... replicas
  loadlab fit       [flags] FILE.csv                     fit the Universal Scalability Law to N,X data
  loadlab experiments [--only NAME,...] [--file FILE]    the articles' claims, measured without and with each setting
  loadlab agent     --listen ADDR                        serve as one generator of run --agents A,B,C

Run 'loadlab COMMAND --help' (or 'loadlab help COMMAND') for a command's flags
and examples.

Exit status:
  0  the run happened and passed its thresholds (see run --threshold)
  1  the run happened but a threshold failed, or more requests failed
     than --max-errors allows (1% by default); one line says which
  2  bad input: an unknown flag, a bad flag value, URL, scenario or file;
     nothing was sent
  3  the run could not happen or finish (the generator failed, the
     output could not be written)
`

// commands maps each subcommand to its implementation; each lives in a file
// of its own.
var commands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
	"run":         runRun,
	"diagnose":    runDiagnose,
	"fit":         runFit,
	"scaleout":    runScaleout,
	"experiments": runExperiments,
	"agent":       runAgent,
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	started := false
	err := dispatch(context.WithValue(ctx, startedKey{}, &started), args, stdout, stderr)
	var ee *exitError
	if err != nil && started && !errors.As(err, &ee) && !errors.Is(err, errUsageShown) {
		return &startedError{err}
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("no command given (see loadlab --help)")
	}
	switch {
	case args[0] == "help" && len(args) > 1:
		// "loadlab help run" is "loadlab run --help".
		if _, ok := commands[args[1]]; !ok {
			return unknownCommand(args[1])
		}
		return dispatch(ctx, []string{args[1], "--help"}, stdout, stderr)
	case args[0] == "-h", args[0] == "--help", args[0] == "help":
		fmt.Fprint(stdout, usage)
		return errUsageShown
	}
	cmd, ok := commands[args[0]]
	if !ok {
		return unknownCommand(args[0])
	}
	return cmd(ctx, args[1:], stdout, stderr)
}

func unknownCommand(name string) error {
	return fmt.Errorf("unknown command %q (want run, diagnose, scaleout, fit, experiments or agent; see loadlab --help)", name)
}

// helpTexts holds each flag set's help and where --help prints it.
var helpTexts sync.Map // *flag.FlagSet -> helpText

type helpText struct {
	text string
	out  io.Writer
}

// newFlagSet returns a subcommand's flag set. --help prints the command's
// text and its flags to stdout; a parse error prints nothing itself (the
// caller reports one line), so a typo does not bury the reason under the
// whole usage.
func newFlagSet(name, usage string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	helpTexts.Store(fs, helpText{usage, stdout})
	return fs
}

// outputFlags adds --json and --html, where what the command measured is
// written: a file, or - for standard output (the text summary then goes to
// standard error).
func outputFlags(fs *flag.FlagSet) *report.Outputs {
	o := &report.Outputs{}
	fs.StringVar(&o.JSON, "json", "", "write the result as JSON to this file; - for standard output (the summary then goes to standard error)")
	fs.StringVar(&o.HTML, "html", "", "write a self-contained HTML report to this file; - for standard output")
	return o
}

// parseArgs parses a subcommand's arguments; --help prints the help and
// becomes errUsageShown, a bad flag a one-line error pointing to --help.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		if h, ok := helpTexts.Load(fs); ok {
			h := h.(helpText)
			fmt.Fprint(h.out, h.text)
			fs.SetOutput(h.out)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
		}
		return nil, errUsageShown
	}
	if err != nil {
		return nil, badInput(fmt.Errorf("%s: %s (see loadlab %s --help)", fs.Name(), flagError(fs, err), fs.Name()))
	}
	return pos, nil
}

// given reports whether the flag name was set on the command line, for a
// flag whose default is also a value a user could give (--pid 0).
func given(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(fl *flag.Flag) { found = found || fl.Name == name })
	return found
}

// badFlagValue is the flag package's error for a value its type cannot
// parse, which says only "parse error".
var badFlagValue = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for (?:flag )?-([^:]+): parse error$`)

// flagError is err with the flag package's "parse error" replaced by what
// the flag wants: --rate abc said only 'invalid value "abc" for flag
// -rate: parse error'.
func flagError(fs *flag.FlagSet, err error) string {
	m := badFlagValue.FindStringSubmatch(err.Error())
	if m == nil {
		return err.Error()
	}
	f := fs.Lookup(m[2])
	if f == nil {
		return err.Error()
	}
	getter, ok := f.Value.(flag.Getter)
	if !ok {
		return err.Error()
	}
	var want string
	switch getter.Get().(type) {
	case time.Duration:
		want = "a duration with a unit, such as 500ms or 2s"
	case float64:
		want = "a number"
	case int, int64, uint, uint64:
		want = "a whole number"
	case bool:
		want = "true or false"
	default:
		return err.Error()
	}
	return fmt.Sprintf("--%s %q: want %s", m[2], m[1], want)
}

// parseInterspersed parses flags that may come before or after positional
// arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
