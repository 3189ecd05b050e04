package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/perfscale/perfscale/loadlab/distributed"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/scenario"
)

const agentUsage = `Usage: loadlab agent --listen ADDR

Serves as one generator of a distributed run: 'loadlab run --agents
A,B,C ...' on a coordinator sends each agent its share of the load (the
rate or the users, split evenly), starts them at one agreed instant and
merges their HDR histograms exactly into one report. An agent runs one
run at a time, and stops sending load when its coordinator goes away.

The agent has no authentication: whoever reaches ADDR can make it send
load anywhere. Listen on a private network (or 127.0.0.1), as the
manifests in deploy/k8s/loadlab do.

It prints "loadlab agent listening on ADDR" once it accepts runs, and
serves until interrupted (SIGINT or SIGTERM), or with --once until its
first run ends (as a Kubernetes Job's pod should: exit 0 when the run
succeeded, 3 when it failed or was stopped). An ADDR that is not
HOST:PORT is refused with exit 2; one it cannot listen on (a port in
use) exits 3.

Examples:
  loadlab agent --listen :7070
  loadlab agent --listen 127.0.0.1:0      # a free port, printed on start

Flags:
`

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("agent", agentUsage, stdout)
	listen := fs.String("listen", "", "address to serve the agent's API on (HOST:PORT, :PORT)")
	once := fs.Bool("once", false, "exit after the first run ends")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return badInput(fmt.Errorf("agent: unexpected argument %q (see loadlab agent --help)", pos[0]))
	}
	if *listen == "" {
		return badInput(errors.New("agent: give --listen HOST:PORT (see loadlab agent --help)"))
	}
	// A malformed address is the input's fault (exit 2); a well-formed one
	// that cannot be listened on (a port in use) is the machine's: the
	// agent could not run (exit 3).
	if _, port, err := net.SplitHostPort(*listen); err != nil || (port != "0" && !validPort(port)) {
		return badInput(fmt.Errorf("agent: --listen %q is not HOST:PORT or :PORT, such as :7070 (port 0: a free one)", *listen))
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return notRun(fmt.Errorf("agent: %v", err))
	}
	markStarted(ctx)
	a := &distributed.Agent{Log: slog.New(slog.NewTextHandler(stderr, nil))}
	ended := make(chan error, 1)
	if *once {
		a.RunEnded = func(err error) {
			select {
			case ended <- err:
			default:
			}
		}
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "loadlab agent listening on %s\n", ln.Addr())
	var runErr error
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return notRun(fmt.Errorf("agent: %v", err))
	case <-ctx.Done():
	case runErr = <-ended:
	}
	// A run in progress ends with its connection: its coordinator then
	// fails the run, naming this agent.
	shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		srv.Close()
	}
	if runErr != nil {
		return notRun(fmt.Errorf("agent: the run failed: %v", runErr))
	}
	return nil
}

// agentFlags are --agents and --agents-wait, as run, diagnose and
// scaleout take them.
type agentFlags struct {
	fs   *flag.FlagSet
	list *string
	wait *time.Duration
}

func newAgentFlags(fs *flag.FlagSet, what string) agentFlags {
	return agentFlags{
		fs:   fs,
		list: fs.String("agents", "", "send "+what+" from these agents (HOST:PORT,HOST:PORT,... each a 'loadlab agent'): the rate, users and requests\nare split across them, they start together, and their histograms merge exactly"),
		wait: fs.Duration("agents-wait", 0, "with --agents: wait up to this long for agents that do not answer yet (pods starting)"),
	}
}

// on reports whether --agents was given.
func (a agentFlags) on() bool { return *a.list != "" }

// agents are the --agents addresses.
func (a agentFlags) agents() []string { return agentList(*a.list) }

// agentCount is "1 agent" or "N agents", for the summary's first lines.
func agentCount(n int) string {
	if n == 1 {
		return "1 agent"
	}
	return fmt.Sprintf("%d agents", n)
}

// check refuses --agents without agents and --agents-wait without --agents.
func (a agentFlags) check() error {
	given := map[string]bool{}
	a.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	switch {
	case given["agents-wait"] && (!a.on() || *a.wait <= 0):
		return errors.New("--agents-wait takes a positive duration, with --agents")
	case given["agents"] && len(a.agents()) == 0:
		return errors.New("--agents: give a list of agents, such as 10.0.0.5:7070,10.0.0.6:7070")
	}
	for _, agent := range a.agents() {
		// Refused here, not dialled: "abc" was looked up as a host name
		// and failed the run as unreachable (exit 3).
		if _, port, err := net.SplitHostPort(agent); err != nil || !validPort(port) {
			return fmt.Errorf("--agents: %q is not HOST:PORT, such as 10.0.0.5:7070", agent)
		}
	}
	return nil
}

// validPort is a port number from 1 to 65535.
func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// coordinator runs on the --agents.
func (a agentFlags) coordinator() distributed.Coordinator {
	return distributed.Coordinator{Agents: a.agents(), WaitReady: *a.wait}
}

// source is the --agents as the load source of a diagnosis or a
// scale-out search: each phase sends what base sends (a request, or the
// scenario read from scen with its base), split across the agents.
func (a agentFlags) source(cfg load.Config, scen, base string) (*distributed.Runner, error) {
	var src *distributed.ScenarioSource
	if scen != "" {
		var err error
		if src, err = scenarioSource(scen, base); err != nil {
			return nil, err
		}
	}
	spec, err := distributed.SpecOf(cfg, src)
	if err != nil {
		return nil, err
	}
	return &distributed.Runner{Coordinator: a.coordinator(), Base: spec, Local: distributed.OnThisMachine}, nil
}

// agentList splits --agents, dropping empty entries.
func agentList(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// runOnAgents runs cfg on the --agents and returns the merged result, or
// an error with its exit code: a spec the agents refuse is bad input, an
// agent failing is a run that could not finish.
func runOnAgents(ctx context.Context, f *runFlags, cfg load.Config) (*load.Result, error) {
	var src *distributed.ScenarioSource
	if *f.scen != "" {
		var err error
		if src, err = scenarioSource(*f.scen, *f.base); err != nil {
			return nil, badInput(fmt.Errorf("run: %v", err))
		}
	}
	spec, err := distributed.SpecOf(cfg, src)
	if err != nil {
		return nil, badInput(fmt.Errorf("run: %v", err))
	}
	c := f.agents.coordinator()
	if cfg.Progress != nil {
		c.Progress = cfg.Progress
	}
	res, err := c.Run(ctx, spec)
	var bad *distributed.BadSpecError
	var agentErr *distributed.AgentError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &bad):
		return nil, badInput(fmt.Errorf("run: %v", err))
	case errors.As(err, &agentErr), ctx.Err() != nil:
		return nil, notRun(fmt.Errorf("run: %v", err))
	}
	// Split refusing the load (fewer users than agents) is the input's.
	return nil, badInput(fmt.Errorf("run: %v", err))
}

// scenarioSource reads a scenario for the agents: a built-in one or a
// file's text.
func scenarioSource(nameOrPath, base string) (*distributed.ScenarioSource, error) {
	src, err := scenario.Source(nameOrPath)
	if err != nil {
		return nil, err
	}
	return &distributed.ScenarioSource{Name: nameOrPath, Source: src, JSON: filepath.Ext(nameOrPath) == ".json", Base: base}, nil
}
