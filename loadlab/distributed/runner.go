package distributed

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/perfscale/perfscale/loadlab/measure"
)

// Runner sends each phase of a diagnosis or a scale-out search from the
// agents (a measure.Runner, in place of this process's generator): the
// phase's users, rate and requests are split across them, they start at
// one instant, and the step is measured from their exactly merged
// histograms. A saturated agent marks the step's generator saturated; an
// agent that fails fails the phase with an *AgentError naming it.
type Runner struct {
	// Coordinator holds the agents and how to reach them; each phase runs
	// on a copy of it.
	Coordinator Coordinator
	// Base is what every phase sends (Target or Scenario) and how
	// (Timeout, Client, SLO, MaxInFlight); each phase sets the load.
	Base Spec
	// Local reports whether an agent runs on this machine (nil: none
	// does). Only those agents' CPU is counted as the generator's in the
	// step: the CPU the diagnosis takes away from a target on this
	// machine, which remote agents do not use.
	Local func(agent string) bool
}

// Run runs one phase on the agents. A phase with fewer users (or
// requests) than agents runs on the first that many, one user each: a
// single user's baseline is one agent's.
func (r *Runner) Run(ctx context.Context, s measure.Spec) (measure.Step, error) {
	spec := r.Base
	spec.Rate, spec.Concurrency, spec.Duration, spec.Requests = s.Rate, s.Concurrency, s.Duration, s.Requests
	spec.Stages, spec.StagedUsers = nil, false
	if s.Rate > 0 {
		spec.Concurrency = 0
	}
	c := r.Coordinator
	n := len(c.Agents)
	if spec.Concurrency > 0 {
		n = min(n, spec.Concurrency)
	}
	if spec.Requests > 0 {
		n = int(min(int64(n), spec.Requests))
	}
	c.Agents = c.Agents[:max(n, 1)]
	res, err := c.Run(ctx, spec)
	if err != nil {
		return measure.Step{}, err
	}
	if err := ctx.Err(); err != nil {
		return measure.Step{}, err
	}
	step := measure.StepOf(s, res)
	step.GeneratorCPUCores = 0
	for i, a := range res.Agents {
		if r.Local != nil && r.Local(c.Agents[i]) {
			step.GeneratorCPUCores += a.GeneratorCPUCores
		}
	}
	return step, nil
}

// OnThisMachine reports whether an agent's address (host:port or a URL)
// is one of this machine's: a loopback address, or an address of one of
// its network interfaces. A host name is looked up (for at most a
// second); one that does not resolve is taken as remote.
func OnThisMachine(agent string) bool {
	host := agent
	if _, rest, ok := strings.Cut(host, "://"); ok {
		host = rest
	}
	host, _, _ = strings.Cut(host, "/")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "" {
		return true // ":7070" is this machine's
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			return false
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	own, _ := net.InterfaceAddrs()
	for _, ip := range ips {
		if ip.IsLoopback() || ip.IsUnspecified() {
			return true
		}
		for _, a := range own {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return true
			}
		}
	}
	return false
}
