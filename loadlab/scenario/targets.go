package scenario

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/perfscale/perfscale/loadlab/load"
)

// Targets is a list of requests sent in turn (round robin over all
// users), read in vegeta's "http" format:
//
//	GET http://127.0.0.1:8080/v1/menu
//	X-Trace: 1
//
//	PUT http://127.0.0.1:8080/v1/cart/items/3
//	Content-Type: application/json
//	@body.json
//
// A target is a line METHOD URL, then optional header lines "Name: value",
// then an optional body line @FILE (relative to dir). Blank lines separate
// targets; lines starting with # are comments. It implements
// load.Scenario.
type Targets struct {
	requests  []load.Request
	endpoints []load.EndpointInfo
	next      atomic.Uint64
}

// maxTargets bounds a targets list read from a pipe.
const maxTargets = 1_000_000

// ReadTargets reads targets; an error names the line it is on. Each header
// in extra is added to every target.
func ReadTargets(r io.Reader, dir string, extra http.Header) (*Targets, error) {
	t := &Targets{}
	byName := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var cur *load.Request
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(text, "#"):
			continue
		case text == "":
			cur = nil
			continue
		case cur == nil:
			req, err := parseTargetLine(text)
			if err != nil {
				return nil, fmt.Errorf("targets line %d: %v", line, err)
			}
			if len(t.requests) == maxTargets {
				return nil, fmt.Errorf("targets line %d: more than %d targets", line, maxTargets)
			}
			name := req.Method + " " + pathOf(req.URL)
			ep, ok := byName[name]
			if !ok {
				ep = len(t.endpoints)
				byName[name] = ep
				t.endpoints = append(t.endpoints, load.EndpointInfo{Name: name, Request: name})
			}
			req.Endpoint = ep
			for k, vs := range extra {
				req.Header[k] = append([]string(nil), vs...)
			}
			t.requests = append(t.requests, req)
			cur = &t.requests[len(t.requests)-1]
		case strings.HasPrefix(text, "@"):
			if cur.Body != nil {
				return nil, fmt.Errorf("targets line %d: a second body for one target", line)
			}
			path := text[1:]
			if !filepath.IsAbs(path) {
				path = filepath.Join(dir, path)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("targets line %d: body: %v", line, err)
			}
			cur.Body = b
		default:
			name, value, ok := strings.Cut(text, ":")
			name = strings.TrimSpace(name)
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("targets line %d: %q is neither a header 'Name: value', a body '@FILE' nor a blank line before the next target", line, text)
			}
			cur.Header.Add(name, strings.TrimSpace(value))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("targets line %d: %v", line+1, err)
	}
	if len(t.requests) == 0 {
		return nil, errors.New("no targets: give lines such as 'GET http://127.0.0.1:8080/v1/menu'")
	}
	return t, nil
}

func parseTargetLine(text string) (load.Request, error) {
	method, rawURL, ok := strings.Cut(text, " ")
	rawURL = strings.TrimSpace(rawURL)
	if !ok || rawURL == "" {
		return load.Request{}, fmt.Errorf("%q: want METHOD URL, such as 'GET http://127.0.0.1:8080/v1/menu'", text)
	}
	if !methodRE.MatchString(method) {
		return load.Request{}, fmt.Errorf("%q is not an HTTP method (upper case, such as GET)", method)
	}
	if err := load.CheckURL(rawURL); err != nil {
		return load.Request{}, err
	}
	return load.Request{Method: method, URL: rawURL, Header: http.Header{}}, nil
}

func pathOf(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Path != "" {
		return u.Path
	}
	return "/"
}

// Len is the number of targets.
func (t *Targets) Len() int { return len(t.requests) }

// Endpoints lists the distinct method and path pairs of the targets.
func (t *Targets) Endpoints() []load.EndpointInfo { return t.endpoints }

// NewSession returns a user that sends the targets in turn with the
// others.
func (t *Targets) NewSession() load.Session { return targetSession{t} }

type targetSession struct{ t *Targets }

func (s targetSession) Next() (*load.Request, error) {
	i := (s.t.next.Add(1) - 1) % uint64(len(s.t.requests))
	return &s.t.requests[i], nil
}

func (targetSession) Observe(*load.Request, int, []byte) {}
