// Package distributed runs one load test from several generators (agents)
// and reports it as one run: a coordinator splits the open-loop rate or
// the users across the agents, starts them at one agreed instant, collects
// each agent's HDR histograms (per endpoint, per stage and per second, in
// hdrhistogram's compressed encoding) and merges them exactly, so the
// merged percentiles are those of the union of every agent's samples.
// Each agent's own saturation check is kept, and a saturated agent marks
// the whole result. An agent that fails or goes silent mid-run fails the
// run with its name: a partial result is never reported as a whole one.
package distributed

import (
	"errors"
	"fmt"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/scenario"
)

// Spec is what an agent runs: a load.Config without its functions, and
// the scenario as its source, since the agent has no access to the
// coordinator's files.
type Spec struct {
	Rate        float64       `json:"rate,omitempty"`
	Concurrency int           `json:"concurrency,omitempty"`
	ThinkTime   time.Duration `json:"think_ns,omitempty"`
	Duration    time.Duration `json:"duration_ns,omitempty"`
	Requests    int64         `json:"requests,omitempty"`
	Timeout     time.Duration `json:"timeout_ns,omitempty"`
	MaxInFlight int           `json:"max_inflight,omitempty"`
	SLO         time.Duration `json:"slo_ns,omitempty"`
	Stages      []load.Stage  `json:"stages,omitempty"`
	StagedUsers bool          `json:"staged_users,omitempty"`
	Client      load.Client   `json:"client,omitempty"`
	// Exactly one of Target and Scenario.
	Target   *load.Request   `json:"target,omitempty"`
	Scenario *ScenarioSource `json:"scenario,omitempty"`
}

// ScenarioSource is a scenario file's text, compiled by each agent.
type ScenarioSource struct {
	Name   string `json:"name"` // the file or built-in name, for messages
	Source []byte `json:"source"`
	JSON   bool   `json:"json,omitempty"`
	Base   string `json:"base,omitempty"` // overrides the file's base URL
}

// SpecOf describes cfg for agents; src is the scenario's source when cfg
// runs one (only scenarios read from a file or built in can be sent).
func SpecOf(cfg load.Config, src *ScenarioSource) (Spec, error) {
	s := Spec{
		Rate: cfg.Rate, Concurrency: cfg.Concurrency, ThinkTime: cfg.ThinkTime, Duration: cfg.Duration,
		Requests: cfg.Requests, Timeout: cfg.Timeout, MaxInFlight: cfg.MaxInFlight, SLO: cfg.SLO,
		Stages: cfg.Stages, StagedUsers: cfg.StagedUsers, Client: cfg.Client, Target: cfg.Target, Scenario: src,
	}
	if cfg.Scenario != nil && src == nil {
		return Spec{}, errors.New("this kind of scenario cannot be sent to agents: give a URL or --scenario")
	}
	if cfg.Scenario == nil {
		s.Scenario = nil
	}
	return s, nil
}

// Config builds the load configuration an agent runs.
func (s Spec) Config() (load.Config, error) {
	cfg := load.Config{
		Rate: s.Rate, Concurrency: s.Concurrency, ThinkTime: s.ThinkTime, Duration: s.Duration,
		Requests: s.Requests, Timeout: s.Timeout, MaxInFlight: s.MaxInFlight, SLO: s.SLO,
		Stages: s.Stages, StagedUsers: s.StagedUsers, Client: s.Client, Target: s.Target,
	}
	if s.Scenario != nil {
		f, err := scenario.Parse(s.Scenario.Source, s.Scenario.JSON)
		if err != nil {
			return cfg, fmt.Errorf("scenario %s: %w", s.Scenario.Name, err)
		}
		if s.Scenario.Base != "" {
			f.Base = s.Scenario.Base
		}
		sc, err := scenario.Compile(f)
		if err != nil {
			return cfg, fmt.Errorf("scenario %s: %w", s.Scenario.Name, err)
		}
		cfg.Scenario = sc
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// Part is one agent's share of a run.
type Part struct {
	Spec Spec
	// Phase is how long after the agreed instant this agent starts: in
	// open loop, agents' schedules interleave (agent i of n starts i/n of
	// the whole run's interval late), so together they send as evenly
	// spaced as one generator would.
	Phase time.Duration
}

// Split divides s across n agents: the rate, the users, the request
// count and the stages' targets. Shares of whole numbers differ by at
// most one; every agent gets some load, or Split says why it cannot.
func Split(s Spec, n int) ([]Part, error) {
	if n < 1 {
		return nil, errors.New("no agents")
	}
	parts := make([]Part, n)
	for i := range parts {
		parts[i].Spec = s
		parts[i].Spec.Stages = nil
	}
	if s.Concurrency > 0 {
		if s.Concurrency < n {
			return nil, fmt.Errorf("%d users cannot be split across %d agents: give at least one user per agent", s.Concurrency, n)
		}
		for i, u := range shares(int64(s.Concurrency), n) {
			parts[i].Spec.Concurrency = int(u)
		}
	}
	if s.Requests > 0 {
		if s.Requests < int64(n) {
			return nil, fmt.Errorf("%d requests cannot be split across %d agents: give at least one request per agent", s.Requests, n)
		}
		for i, r := range shares(s.Requests, n) {
			parts[i].Spec.Requests = r
		}
	}
	if s.Rate > 0 {
		interval := time.Duration(float64(time.Second) / s.Rate)
		for i := range parts {
			parts[i].Spec.Rate = s.Rate / float64(n)
			parts[i].Phase = time.Duration(i) * interval
		}
	}
	if len(s.Stages) > 0 {
		if err := splitStages(s, parts); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

// splitStages gives each agent its share of every stage's target.
func splitStages(s Spec, parts []Part) error {
	n := len(parts)
	for _, st := range s.Stages {
		var each []int64
		if s.StagedUsers {
			each = shares(int64(st.Target), n)
		}
		for i := range parts {
			share := load.Stage{Duration: st.Duration, Target: st.Target / float64(n)}
			if s.StagedUsers {
				share.Target = float64(each[i])
			}
			parts[i].Spec.Stages = append(parts[i].Spec.Stages, share)
		}
	}
	if s.StagedUsers {
		peak := 0.0
		for _, st := range s.Stages {
			peak = max(peak, st.Target)
		}
		if peak < float64(n) {
			return fmt.Errorf("stages peaking at %g users cannot be split across %d agents: give at least one user per agent", peak, n)
		}
	}
	return nil
}

// shares splits total into n whole shares differing by at most one, the
// larger first.
func shares(total int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = total / int64(n)
		if int64(i) < total%int64(n) {
			out[i]++
		}
	}
	return out
}
