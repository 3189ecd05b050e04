package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/scenario"
)

const runUsage = `Usage: loadlab run [flags] URL
       loadlab run [flags] --scenario FILE|shop [--base URL]

Sends HTTP load and reports latency percentiles (HDR histogram), throughput
and errors. Open loop (--rate) sends at a fixed rate whatever the target
does and measures each latency from the request's intended send time, so
a stall cannot hide (no coordinated omission). Closed loop (--concurrency)
runs N users that each wait for their answer.

A scenario file (YAML or JSON) has a base URL, setup requests each user
makes once (capture: {token: $.token} keeps a value from the JSON answer),
and weighted steps, each one request or a sequence (add to cart, then check
out). Paths, headers and bodies are templates: {{.token}} for a captured
value, {{rand 1 200}}, {{uuid}}. See loadlab/scenario/shop.yaml, the
built-in "shop" journey. In open loop each request slot in flight is a user.

The summary says when loadlab itself may have limited the run (its CPU,
the machine's, requests sent late or waiting for --max-inflight), and so
does --json ("generator_saturated" and "saturation_reasons").

Examples:
  loadlab run --rate 500 --duration 30s http://127.0.0.1:8080/v1/menu
  loadlab run --concurrency 16 --requests 10000 http://127.0.0.1:8080/v1/items/7
  loadlab run --rate 50 -H 'Content-Type: application/json' --method PUT \
      --body '{"quantity": 1}' http://127.0.0.1:8080/v1/cart/items/3
  loadlab run --scenario shop --base http://127.0.0.1:8080 --rate 200 --duration 10s --json out.json

Flags:
`

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", runUsage, stderr)
	var (
		rate        = fs.Float64("rate", 0, "open loop: requests per second")
		concurrency = fs.Int("concurrency", 0, "closed loop: number of users")
		think       = fs.Duration("think", 0, "closed loop: pause between a user's requests")
		duration    = fs.Duration("duration", 0, "how long to send (default 10s when --requests is not given)")
		requests    = fs.Int64("requests", 0, "how many requests to send")
		timeout     = fs.Duration("timeout", load.DefaultTimeout, "per-request timeout")
		method      = fs.String("method", "GET", "HTTP method for a URL target")
		body        = fs.String("body", "", "request body for a URL target")
		bodyFile    = fs.String("body-file", "", "read the request body from this file")
		scen        = fs.String("scenario", "", "scenario file (YAML or JSON) or a built-in name: shop")
		base        = fs.String("base", "", "base URL for the scenario (overrides the file's)")
		jsonOut     = fs.String("json", "", "write the result as JSON to this file")
		client      = fs.String("client", string(load.ClientFastHTTP), "HTTP client: fasthttp or nethttp")
		maxInFlight = fs.Int("max-inflight", load.DefaultMaxInFlight, "open loop: most requests in flight at once")
		headers     headerFlags
	)
	fs.Var(&headers, "H", "request header 'Name: value' (repeatable)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}

	cfg := load.Config{
		Rate: *rate, Concurrency: *concurrency, ThinkTime: *think, Duration: *duration,
		Requests: *requests, Timeout: *timeout, Client: load.Client(*client), MaxInFlight: *maxInFlight,
	}
	if cfg.Duration == 0 && cfg.Requests == 0 {
		cfg.Duration = 10 * time.Second
	}
	target := ""
	switch {
	case *scen != "" && len(pos) > 0:
		return errors.New("run: give a URL or --scenario, not both")
	case *scen != "":
		s, err := scenario.Load(*scen, *base)
		if err != nil {
			return fmt.Errorf("run: %v", err)
		}
		cfg.Scenario = s
		target = "scenario " + *scen
	case len(pos) == 0:
		return errors.New("run: no target: give a URL or --scenario (see loadlab run --help)")
	case len(pos) > 1:
		return fmt.Errorf("run: one URL only, got %d arguments", len(pos))
	default:
		if err := load.CheckURL(pos[0]); err != nil {
			return fmt.Errorf("run: %v", err)
		}
		req := &load.Request{Method: strings.ToUpper(*method), URL: pos[0], Header: http.Header{}}
		for _, h := range headers {
			name, value, ok := strings.Cut(h, ":")
			if !ok || strings.TrimSpace(name) == "" {
				return fmt.Errorf("run: header %q must look like 'Name: value'", h)
			}
			req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		}
		switch {
		case *body != "" && *bodyFile != "":
			return errors.New("run: give --body or --body-file, not both")
		case *bodyFile != "":
			b, err := os.ReadFile(*bodyFile)
			if err != nil {
				return fmt.Errorf("run: %v", err)
			}
			req.Body = b
		case *body != "":
			req.Body = []byte(*body)
		}
		cfg.Target = req
		target = req.Method + " " + req.URL
	}
	if *scen == "" && *base != "" {
		return errors.New("run: --base applies to --scenario only")
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("run: %v", err)
	}

	if isTerminal(stderr) {
		cfg.Progress = func(s load.Snapshot) { fmt.Fprintf(stderr, "\r\033[K%s", progressLine(s)) }
	}
	fmt.Fprintf(stdout, "loadlab run: %s\n", describe(cfg, target))
	res, err := load.Run(ctx, cfg)
	if cfg.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		return fmt.Errorf("run: %v", err)
	}
	printSummary(stdout, res)
	if *jsonOut != "" {
		if err := writeJSON(*jsonOut, struct {
			Target string `json:"target"`
			*load.Result
		}{target, res}); err != nil {
			return fmt.Errorf("run: %v", err)
		}
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func describe(cfg load.Config, target string) string {
	model := fmt.Sprintf("closed loop, %d users", cfg.Concurrency)
	if cfg.ThinkTime > 0 {
		model += fmt.Sprintf(" thinking %v", cfg.ThinkTime)
	}
	if cfg.Rate > 0 {
		model = fmt.Sprintf("open loop at %g req/s", cfg.Rate)
	}
	var bounds []string
	if cfg.Duration > 0 {
		bounds = append(bounds, "for "+cfg.Duration.String())
	}
	if cfg.Requests > 0 {
		bounds = append(bounds, fmt.Sprintf("up to %d requests", cfg.Requests))
	}
	return fmt.Sprintf("%s, %s, %s", target, model, strings.Join(bounds, " and "))
}

func progressLine(s load.Snapshot) string {
	line := fmt.Sprintf("%5.0fs  %8.0f req/s  p99 %-9s  requests %d  errors %d",
		s.Elapsed.Seconds(), s.RateRPS, ms(s.P99), s.Requests, s.Errors)
	if s.Saturated {
		line += "  GENERATOR SATURATED"
	}
	return line
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

func printSummary(w io.Writer, r *load.Result) {
	e := r.Errors
	fmt.Fprintf(w, "  requests    %d in %.2fs = %.1f req/s\n", r.Requests, r.Elapsed.Seconds(), r.ThroughputRPS)
	fmt.Fprintf(w, "  errors      %d (4xx %d, 5xx %d, timeout %d, connection %d, other %d)\n",
		e.Total(), e.Status4xx, e.Status5xx, e.Timeout, e.Connection, e.Other)
	l := r.Latency
	fmt.Fprintf(w, "  latency     %-10s %-10s %-10s %-10s %-10s %-10s %s\n", "min", "mean", "p50", "p90", "p99", "p99.9", "max")
	fmt.Fprintf(w, "              %-10s %-10s %-10s %-10s %-10s %-10s %s\n",
		ms(l.Min), ms(l.Mean), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max))
	if r.Model == "open" {
		fmt.Fprintln(w, "              (open loop: latency counts from each request's intended send time)")
	}
	if r.GeneratorSaturated {
		fmt.Fprintln(w, "  generator   SATURATED: the numbers may describe loadlab, not the target:")
		for _, reason := range r.SaturationReasons {
			fmt.Fprintf(w, "              - %s\n", reason)
		}
	} else {
		fmt.Fprintln(w, "  generator   kept up (CPU below 90%, requests on schedule)")
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
