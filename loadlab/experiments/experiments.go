// Package experiments runs the articles' claims as measurements: each
// experiment starts a system without and with one setting (an
// anti-pattern switch, a CPU size), measures both the same way (one
// user's latency per endpoint, a diagnosis, a capacity search over
// replica counts), and says what the lab found beside what the claim
// expects. A list is a YAML file (Parse, the format in docs/experiments.md);
// Builtin is the shop's. loadlab experiments wires it to the command line.
package experiments

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/perfscale/perfscale/loadlab/scenario"
)

// What an experiment measures.
const (
	// MeasureBaseline: one user walks the scenario (or sends the path)
	// for Requests requests; the judged endpoint's latency with the
	// setting against without.
	MeasureBaseline = "baseline"
	// MeasureDiagnose: loadlab diagnose on each system; the verdict is
	// the diagnosis of the system with the setting.
	MeasureDiagnose = "diagnose"
	// MeasureScaleout: the capacity search at each of Replicas on each
	// system (its commands are up and down, with {n}).
	MeasureScaleout = "scaleout"
	// MeasureReplicas: at each of Replicas (up with {n}), Users
	// closed-loop users for StepDuration: goodput, p99 and the share of
	// failed requests; efficiency X(n) / (n × X(1)). A cheaper look at
	// scaling out than a capacity search.
	MeasureReplicas = "replicas"
	// MeasureVertical: one system, scaled out at CPUs[0] per replica and
	// up on one replica (scaleout --cpus): the same total CPU both ways.
	MeasureVertical = "vertical"
)

// The lab's verdicts, which an experiment's Expected names.
const (
	// baseline
	VerdictPerformance = "performance" // slower for one user by Factor or more
	VerdictNoChange    = "no-change"   // within Factor for one user
	VerdictFaster      = "faster"      // faster for one user by Factor or more
	// diagnose: performance when one user is above the SLO with the
	// setting and not without it; else the diagnosis's kind of
	// scalability problem of the system with the setting (diagnose.Kind*),
	// when the system without it does not have the same: contention,
	// coherency, capacity, errors, tail-latency, none.
	// scaleout
	VerdictFailsToScaleOut = "fails-to-scale-out" // errors bound a count above 1, not 1
	VerdictEfficiencyFalls = "efficiency-falls"   // efficiency at the top count well below the system's without
	VerdictScales          = "scales"             // neither
	// vertical
	VerdictHorizontal = "horizontal" // scaling out gave more capacity than up
	VerdictVertical   = "vertical"   // scaling up gave more
	VerdictEqual      = "equal"      // within Factor
	// VerdictUntrusted: the measurement flagged its own figures as not
	// to be trusted (a scaleout whose capacities the machine bounded, a
	// replicas measure whose 1-replica reference the errors bound); no
	// verdict on the claim.
	VerdictUntrusted = "untrusted"
	// VerdictMachineBound: the machine, not the system, held back a count
	// of a replicas or scaleout measure (other work held the CPUs the
	// system's processes, none at its quota, queued for); no verdict on
	// the claim.
	VerdictMachineBound = "machine-bound"
	// VerdictWaits: the experiment needs what is not built yet; nothing
	// was run.
	VerdictWaits = "waits"
)

var verdictsOf = map[string][]string{
	MeasureBaseline: {VerdictPerformance, VerdictNoChange, VerdictFaster},
	MeasureDiagnose: {VerdictPerformance, "contention", "coherency", "capacity", "errors", "tail-latency", "none"},
	MeasureScaleout: {VerdictFailsToScaleOut, VerdictEfficiencyFalls, VerdictScales},
	MeasureReplicas: {VerdictFailsToScaleOut, VerdictEfficiencyFalls, VerdictScales},
	MeasureVertical: {VerdictHorizontal, VerdictVertical, VerdictEqual},
}

// List is a file of experiments.
type List struct {
	Experiments []Experiment `yaml:"experiments"`
}

// Experiment is one claim and how to measure it.
type Experiment struct {
	Name     string `yaml:"name"`
	Claim    string `yaml:"claim"`
	Expected string `yaml:"expected"`
	Measure  string `yaml:"measure"`
	// Waits names what the experiment needs that is not built (e.g.
	// "sharding"): it is listed, never run.
	Waits string `yaml:"waits"`
	// What to send: a scenario (a file or "shop") or a path of the URL.
	Scenario string `yaml:"scenario"`
	Path     string `yaml:"path"`
	// baseline: the endpoint and statistic judged, the factor that counts
	// as slower (default 1.5), the requests of one user (default 200).
	Endpoint string  `yaml:"endpoint"`
	Stat     string  `yaml:"stat"`
	Factor   float64 `yaml:"factor"`
	// MinDelta is the least difference that counts, whatever the factor
	// (default 0.5 ms): below it, a factor is noise on this machine.
	MinDelta Duration `yaml:"min_delta"`
	Requests int64    `yaml:"requests"`
	// Sizes are paths whose answer's size (with Accept-Encoding: br, gzip)
	// is measured on each system, in bytes.
	Sizes []string `yaml:"sizes"`
	// diagnose and scaleout
	SLO            Duration `yaml:"slo"`
	MaxConcurrency int      `yaml:"max_concurrency"`
	// Users: replicas, the closed-loop users (default 8); scaleout and
	// vertical, the simulated users each count's open-loop probes spread
	// their requests over (scaleout --users; default 0, a user a request
	// in flight, whose sessions are new in every probe).
	Users        int      `yaml:"users"`
	StepDuration Duration `yaml:"step_duration"`
	// Warmup: replicas, how long each count is loaded before it is
	// measured (default 1 s). A count's system is new (its replicas just
	// started, the first count's database too): its first seconds are
	// slower than the rest, and the first count is what every efficiency
	// divides by.
	Warmup        Duration  `yaml:"warmup"`
	ProbeDuration Duration  `yaml:"probe_duration"`
	Replicas      []int     `yaml:"replicas"`
	CPUs          []float64 `yaml:"cpus"`
	// Without and With start the two systems; a vertical experiment has
	// one, With.
	Without *Setting `yaml:"without"`
	With    *Setting `yaml:"with"`
	// NotHere says why the claim cannot hold on this system, when the
	// list's authors found so (the embedded default's own serial section,
	// a checkout that touches one shard): the run writes it beside the
	// measurement when the verdict is not the claim's, so that a "no"
	// comes with its reason. It changes no verdict.
	NotHere string `yaml:"not_here"`
	// Tradeoff, if set, puts the experiment in the trade-off table: the
	// metric the setting improves and the one it makes worse (a note when
	// the lab does not measure it).
	Tradeoff *Tradeoff `yaml:"tradeoff"`
}

// Setting is how to start and stop one system. Serve is a command that
// runs until stopped (the lab stops its process group), answering at URL;
// or Up prints the URL as its last line and Down stops what it started.
// Commands run with sh -c after {shop}, {dir} (a fresh directory) and
// {port} (a free port) are replaced; scaleout's {n} and {cpu} are
// replaced per count.
type Setting struct {
	Label string `yaml:"label"`
	Serve string `yaml:"serve"`
	URL   string `yaml:"url"`
	Up    string `yaml:"up"`
	Down  string `yaml:"down"`
}

// Tradeoff names what a setting buys and what it costs, as metrics of
// the results (see Result.Metrics).
type Tradeoff struct {
	// Of is the side whose trade-off the row states, "with" (default) or
	// "without": the change is from the other side to it.
	Of        string `yaml:"of"`
	Improves  string `yaml:"improves"`
	Worsens   string `yaml:"worsens"`
	WorseNote string `yaml:"worse_note"`
}

// Duration reads "1.5s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (want e.g. 1.5s)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

//go:embed shop.yaml
var builtin []byte

// Builtin is the shop's list of experiments.
func Builtin() *List {
	l, err := Parse(builtin)
	if err != nil {
		panic("experiments: the built-in list: " + err.Error())
	}
	return l
}

// fileTypes names a list's parts as its author knows them (in errors).
var fileTypes = map[string]string{
	"experiments.List":         "the list (a map with experiments:)",
	"[]experiments.Experiment": "a list of experiments",
	"experiments.Experiment":   "an experiment",
	"*experiments.Setting":     "a setting (label, serve, url, up, down)",
	"experiments.Setting":      "a setting (label, serve, url, up, down)",
	"*experiments.Tradeoff":    "a trade-off (of, improves, worsens, worse_note)",
	"experiments.Tradeoff":     "a trade-off (of, improves, worsens, worse_note)",
}

// Parse reads and checks a list: unknown fields, a missing claim or
// setting, a verdict the measure cannot give are refused with the
// experiment's name.
func Parse(src []byte) (*List, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	var l List
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("experiments file: %s", scenario.YAMLProblem(err, fileTypes))
	}
	if len(l.Experiments) == 0 {
		return nil, errors.New("experiments file: no experiments (want a top-level list `experiments:`)")
	}
	seen := map[string]bool{}
	for i := range l.Experiments {
		e := &l.Experiments[i]
		if err := e.check(); err != nil {
			name := e.Name
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			return nil, fmt.Errorf("experiment %s: %v", name, err)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("experiment %s: the name is used twice", e.Name)
		}
		seen[e.Name] = true
		e.defaults()
	}
	return &l, nil
}

func (e *Experiment) defaults() {
	if e.Factor == 0 {
		e.Factor = 1.5
	}
	if e.MinDelta == 0 {
		e.MinDelta = Duration(500 * time.Microsecond)
	}
	if e.Stat == "" {
		e.Stat = "p50"
	}
	if e.Requests == 0 {
		e.Requests = 200
	}
	if e.SLO == 0 {
		e.SLO = Duration(50 * time.Millisecond)
	}
	if e.Users == 0 && e.Measure != MeasureScaleout && e.Measure != MeasureVertical {
		// A closed loop's users (replicas, diagnose). A capacity search's
		// users are a pool its open-loop requests spread over, and none
		// given is scaleout's own default: a user a request in flight.
		e.Users = 8
	}
	if e.MaxConcurrency == 0 {
		e.MaxConcurrency = 16
	}
	if e.StepDuration == 0 {
		e.StepDuration = Duration(2 * time.Second)
	}
	if e.ProbeDuration == 0 {
		e.ProbeDuration = Duration(1500 * time.Millisecond)
	}
	if e.Warmup == 0 {
		e.Warmup = Duration(time.Second)
	}
}

func (e *Experiment) check() error {
	switch {
	case e.Name == "":
		return errors.New("no name")
	case strings.ContainsAny(e.Name, ", \t"):
		return fmt.Errorf("name %q has a comma or a space (--only takes a comma-separated list)", e.Name)
	case e.Claim == "":
		return errors.New("no claim: say what the articles claim")
	}
	if e.Waits != "" {
		return nil
	}
	if t := e.Tradeoff; t != nil && (t.Improves == "" || (t.Of != "" && t.Of != "with" && t.Of != "without")) {
		return errors.New("tradeoff: give improves (a metric) and of: with or without")
	}
	verdicts, ok := verdictsOf[e.Measure]
	if !ok {
		return fmt.Errorf("measure %q: want baseline, diagnose, scaleout, replicas or vertical", e.Measure)
	}
	if !slices.Contains(verdicts, e.Expected) {
		return fmt.Errorf("expected %q: a %s measure gives one of %s", e.Expected, e.Measure, strings.Join(verdicts, ", "))
	}
	if (e.Scenario == "") == (e.Path == "") {
		return errors.New("give a scenario or a path to send, one of them")
	}
	if e.Factor < 0 || (e.Factor > 0 && e.Factor <= 1) {
		return fmt.Errorf("factor %g: want more than 1", e.Factor)
	}
	if e.Stat != "" && e.Stat != "p50" && e.Stat != "p99" {
		return fmt.Errorf("stat %q: want p50 or p99", e.Stat)
	}
	if e.Requests < 0 || e.MaxConcurrency < 0 || e.Users < 0 || e.SLO < 0 || e.StepDuration < 0 || e.ProbeDuration < 0 || e.Warmup < 0 {
		return errors.New("requests, max_concurrency, users, slo, step_duration, probe_duration and warmup must not be negative")
	}
	if e.MaxConcurrency == 1 {
		return errors.New("max_concurrency must be at least 2, or there is no ramp")
	}
	return e.checkSettings()
}

func (e *Experiment) checkSettings() error {
	if e.With == nil {
		return errors.New("no `with` setting")
	}
	if e.Measure == MeasureVertical {
		if e.Without != nil {
			return errors.New("a vertical experiment has one system (`with`): out and up are both measured on it")
		}
		if len(e.CPUs) < 2 {
			return errors.New("a vertical experiment needs cpus: the size of a replica scaled out first, then the sizes of one replica scaled up")
		}
		if len(e.Replicas) == 0 {
			return errors.New("a vertical experiment needs replicas")
		}
		return e.With.check("with", true, true)
	}
	if e.Without == nil {
		return errors.New("no `without` setting")
	}
	scaled := e.Measure == MeasureScaleout || e.Measure == MeasureReplicas
	if scaled && (len(e.Replicas) == 0 || e.Replicas[0] != 1) {
		return fmt.Errorf("a %s experiment needs replicas from 1, e.g. [1, 2]", e.Measure)
	}
	if e.Measure == MeasureBaseline && e.Endpoint == "" {
		return errors.New("a baseline experiment needs the endpoint to judge (a scenario step's name, or the path)")
	}
	if err := e.Without.check("without", scaled, false); err != nil {
		return err
	}
	return e.With.check("with", scaled, false)
}

func (s *Setting) check(which string, scaled, cpu bool) error {
	switch {
	case s.Serve != "" && (s.Up != "" || s.Down != ""):
		return fmt.Errorf("%s: give serve (and url), or up and down, not both", which)
	case s.Serve == "" && (s.Up == "" || s.Down == ""):
		return fmt.Errorf("%s: give serve (and url), or up and down", which)
	case s.Serve != "" && s.URL == "":
		return fmt.Errorf("%s: serve needs the url it answers at", which)
	case scaled && s.Serve != "":
		return fmt.Errorf("%s: replica counts need up (with {n}) and down, not serve", which)
	case scaled && !strings.Contains(s.Up, "{n}"):
		return fmt.Errorf("%s: up must contain {n}, the replica count", which)
	case cpu && !strings.Contains(s.Up, "{cpu}"):
		return fmt.Errorf("%s: up must contain {cpu}, the CPU per replica", which)
	}
	return nil
}

// Select keeps the experiments named in only (comma-separated; all when
// empty), in the list's order; a name not in the list is refused with
// the names that are.
func (l *List) Select(only string) ([]Experiment, error) {
	if strings.TrimSpace(only) == "" {
		return l.Experiments, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !slices.ContainsFunc(l.Experiments, func(e Experiment) bool { return e.Name == n }) {
			return nil, fmt.Errorf("--only: no experiment %q; the list has %s", n, strings.Join(l.Names(), ", "))
		}
		want[n] = true
	}
	if len(want) == 0 {
		return nil, errors.New("--only: no experiment named")
	}
	var out []Experiment
	for _, e := range l.Experiments {
		if want[e.Name] {
			out = append(out, e)
		}
	}
	return out, nil
}

// Names are the list's experiments' names, in order.
func (l *List) Names() []string {
	var out []string
	for _, e := range l.Experiments {
		out = append(out, e.Name)
	}
	return out
}
