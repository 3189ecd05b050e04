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
	"syscall"
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

// errUsageShown means help was printed on request; it exits 0.
var errUsageShown = errors.New("usage shown")

func exitCode(err error) int {
	if errors.Is(err, errUsageShown) {
		return 0
	}
	return 1
}

const usage = `loadlab generates HTTP load and diagnoses what it measures.

Usage:
  loadlab run       [flags] URL | --scenario FILE|shop   generate load, report latency and throughput
  loadlab diagnose  [flags] URL                          baseline + concurrency ramp + USL fit + verdict
  loadlab scaleout  --scale-cmd CMD --down-cmd CMD ...   capacity and scaling efficiency at 1, 2, 4... replicas
  loadlab fit       [flags] FILE.csv                     fit the Universal Scalability Law to N,X data

Run 'loadlab COMMAND --help' for a command's flags and examples.
`

// commands maps each subcommand to its implementation; each lives in a file
// of its own.
var commands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
	"run":      runRun,
	"diagnose": runDiagnose,
	"fit":      runFit,
	"scaleout": runScaleout,
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return errUsageShown
	}
	cmd, ok := commands[args[0]]
	if !ok {
		return fmt.Errorf("unknown command %q (want run, diagnose, scaleout or fit; see loadlab --help)", args[0])
	}
	return cmd(ctx, args[1:], stdout, stderr)
}

// newFlagSet returns a subcommand's flag set; its usage is the command's
// text followed by the flags.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses a subcommand's arguments; --help becomes errUsageShown.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, errUsageShown
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", fs.Name(), err)
	}
	return pos, nil
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
