package scenario

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
)

// Targets is a list of requests sent in turn (round robin over all
// users), read in either of vegeta's formats. The "http" format:
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
// targets; lines starting with # are comments. The "json" format is one
// JSON object a line, as vegeta's -format=json reads and `vegeta encode`
// writes:
//
//	{"method": "PUT", "url": "http://127.0.0.1:8080/v1/cart/items/3", "header": {"Content-Type": ["application/json"]}, "body": "eyJxdWFudGl0eSI6IDF9"}
//
// with the body in base64. It implements load.Scenario.
type Targets struct {
	requests  []load.Request
	endpoints []load.EndpointInfo
	byName    map[string]int
	extra     http.Header
	next      atomic.Uint64
}

// The targets formats ReadTargets knows; TargetsAuto tells them apart by
// the first line that is not blank or a comment (a JSON object starts
// with "{", an http target with its method).
const (
	TargetsAuto = ""
	TargetsHTTP = "http"
	TargetsJSON = "json"
)

// maxTargets bounds a targets list read from a pipe.
const maxTargets = 1_000_000

// ReadTargets reads targets in format (TargetsAuto, TargetsHTTP or
// TargetsJSON); an error names the line it is on. Each header in extra
// is added to every target.
func ReadTargets(r io.Reader, format, dir string, extra http.Header) (*Targets, error) {
	if format != TargetsAuto && format != TargetsHTTP && format != TargetsJSON {
		return nil, fmt.Errorf("unknown targets format %q: give http or json", format)
	}
	t := &Targets{byName: map[string]int{}, extra: extra}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	h := httpTargetsReader{t: t, dir: dir}
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if format == TargetsAuto && text != "" && !strings.HasPrefix(text, "#") {
			format = TargetsHTTP
			if strings.HasPrefix(text, "{") {
				format = TargetsJSON
			}
		}
		var err error
		if format == TargetsJSON {
			err = t.addJSON(text)
		} else {
			err = h.line(text)
		}
		if err != nil {
			return nil, fmt.Errorf("targets line %d: %v", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("targets line %d: %v", line+1, err)
	}
	if len(t.requests) == 0 {
		return nil, errors.New("no targets: give lines such as 'GET http://127.0.0.1:8080/v1/menu' or {\"method\": \"GET\", \"url\": \"http://127.0.0.1:8080/v1/menu\"}")
	}
	return t, nil
}

// add appends a target, recording its endpoint (method and path) and
// adding the headers every target gets; it returns the target as stored.
func (t *Targets) add(req load.Request) (*load.Request, error) {
	if len(t.requests) == maxTargets {
		return nil, fmt.Errorf("more than %d targets", maxTargets)
	}
	name := req.Method + " " + pathOf(req.URL)
	ep, ok := t.byName[name]
	if !ok {
		ep = len(t.endpoints)
		t.byName[name] = ep
		t.endpoints = append(t.endpoints, load.EndpointInfo{Name: name, Request: name})
	}
	req.Endpoint = ep
	for k, vs := range t.extra {
		req.Header[k] = append([]string(nil), vs...)
	}
	t.requests = append(t.requests, req)
	return &t.requests[len(t.requests)-1], nil
}

// httpTargetsReader reads vegeta's http format a line at a time.
type httpTargetsReader struct {
	t   *Targets
	dir string
	cur *load.Request // the target whose headers and body come next
}

func (h *httpTargetsReader) line(text string) error {
	switch {
	case strings.HasPrefix(text, "#"):
		return nil
	case text == "":
		h.cur = nil
		return nil
	case h.cur == nil:
		req, err := parseTargetLine(text)
		if err != nil {
			return err
		}
		h.cur, err = h.t.add(req)
		return err
	case strings.HasPrefix(text, "@"):
		if h.cur.Body != nil {
			return errors.New("a second body for one target")
		}
		path := text[1:]
		if !filepath.IsAbs(path) {
			path = filepath.Join(h.dir, path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("body: %v", err)
		}
		h.cur.Body = b
		return nil
	}
	name, value, ok := strings.Cut(text, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("%q is neither a header 'Name: value', a body '@FILE' nor a blank line before the next target", text)
	}
	h.cur.Header.Add(name, strings.TrimSpace(value))
	return nil
}

// jsonTarget is one line of vegeta's json format.
type jsonTarget struct {
	Method string              `json:"method"`
	URL    string              `json:"url"`
	Header map[string][]string `json:"header"`
	Body   []byte              `json:"body"` // base64 in the text
}

// addJSON adds the target a line of the json format holds (blank lines
// and # comments are skipped, as in the http format).
func (t *Targets) addJSON(text string) error {
	if text == "" || strings.HasPrefix(text, "#") {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	var jt jsonTarget
	if err := dec.Decode(&jt); err != nil {
		return fmt.Errorf("not a JSON target {\"method\", \"url\", \"header\", \"body\" (base64)}: %v", err)
	}
	if dec.More() {
		return errors.New("more than one JSON value on the line: give one target a line")
	}
	switch {
	case jt.Method == "":
		return errors.New(`no "method"`)
	case !methodRE.MatchString(jt.Method):
		return fmt.Errorf("%q is not an HTTP method (upper case, such as GET)", jt.Method)
	case jt.URL == "":
		return errors.New(`no "url"`)
	}
	if err := load.CheckURL(jt.URL); err != nil {
		return err
	}
	req := load.Request{Method: jt.Method, URL: jt.URL, Header: http.Header{}, Body: jt.Body}
	for k, vs := range jt.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	_, err := t.add(req)
	return err
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

func (targetSession) Observe(*load.Request, load.Response) time.Duration { return 0 }
