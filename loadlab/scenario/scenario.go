// Package scenario drives user journeys for the load generator: a file
// (YAML or JSON) of setup requests each simulated user makes once, then
// weighted steps chosen at random, with templated paths, headers and
// bodies, and values captured from earlier responses (a session token, an
// order id).
package scenario

import (
	"bytes"
	crand "crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/perfscale/perfscale/loadlab/load"
)

// File is a scenario as written.
type File struct {
	Base  string `yaml:"base" json:"base"`
	Setup []Step `yaml:"setup" json:"setup"`
	Steps []Step `yaml:"steps" json:"steps"`
	// lines maps a place in a YAML file ("steps/2/path",
	// "steps/5/sequence/1/header Authorization") to its line, for errors.
	lines map[string]int
}

// Step is one weighted step: a single request, or a sequence of requests
// made one after the other by the same user (add to cart, then check out).
type Step struct {
	Name     string `yaml:"name" json:"name"`
	Weight   int    `yaml:"weight" json:"weight"`
	Call     `yaml:",inline"`
	Sequence []Call `yaml:"sequence" json:"sequence"`
}

// Call is one request. Path, header values and body are text/template
// templates with the user's captured values (.token) and the functions
// rand MIN MAX and uuid.
type Call struct {
	Method  string            `yaml:"method" json:"method"`
	Path    string            `yaml:"path" json:"path"`
	Headers map[string]string `yaml:"headers" json:"headers"`
	Body    string            `yaml:"body" json:"body"`
	// Capture maps a variable name to a JSON path in the response body:
	// $.token, $.items[0].id.
	Capture map[string]string `yaml:"capture" json:"capture"`
}

// UnmarshalJSON lets JSON scenarios inline the call's fields as YAML does;
// unknown fields are errors here too (the decoder's setting does not reach
// into a custom unmarshaler).
func (s *Step) UnmarshalJSON(b []byte) error {
	var p struct {
		Name     string            `json:"name"`
		Weight   int               `json:"weight"`
		Sequence []Call            `json:"sequence"`
		Method   string            `json:"method"`
		Path     string            `json:"path"`
		Headers  map[string]string `json:"headers"`
		Body     string            `json:"body"`
		Capture  map[string]string `json:"capture"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*s = Step{Name: p.Name, Weight: p.Weight, Sequence: p.Sequence, Call: Call{
		Method: p.Method, Path: p.Path, Headers: p.Headers, Body: p.Body, Capture: p.Capture,
	}}
	return nil
}

//go:embed shop.yaml
var shopScenario []byte

//go:embed shop-writes.yaml
var shopWritesScenario []byte

// Builtin names the scenarios shipped with loadlab: the shop's journey,
// and its writing requests alone.
var Builtin = map[string][]byte{"shop": shopScenario, "shop-writes": shopWritesScenario}

// Source returns a built-in scenario's text by name, or a file's. A bare
// name that is neither says both, so a mistyped built-in name ("shoop")
// is not reported as only a missing file.
func Source(nameOrPath string) ([]byte, error) {
	if src, ok := Builtin[nameOrPath]; ok {
		return src, nil
	}
	src, err := os.ReadFile(nameOrPath)
	if errors.Is(err, fs.ErrNotExist) && (strings.ContainsRune(nameOrPath, os.PathSeparator) || filepath.Ext(nameOrPath) != "") {
		return nil, fmt.Errorf("scenario %s: no such file", nameOrPath)
	}
	if errors.Is(err, fs.ErrNotExist) {
		names := make([]string, 0, len(Builtin))
		for name := range Builtin {
			names = append(names, name)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("scenario %s: no such file, nor a built-in scenario (%s)", nameOrPath, strings.Join(names, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	return src, nil
}

// Load reads a scenario from a file, or a built-in one by name, and
// compiles it; base overrides the file's base URL when not empty.
func Load(nameOrPath, base string) (*Scenario, error) {
	src, err := Source(nameOrPath)
	if err != nil {
		return nil, err
	}
	f, err := Parse(src, filepath.Ext(nameOrPath) == ".json")
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", nameOrPath, err)
	}
	if base != "" {
		f.Base = base
	}
	s, err := Compile(f)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", nameOrPath, err)
	}
	return s, nil
}

// Parse decodes a scenario; unknown fields are errors, so a typo does not
// silently change the load.
func Parse(src []byte, isJSON bool) (*File, error) {
	var f File
	if isJSON {
		dec := json.NewDecoder(bytes.NewReader(src))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			return nil, fmt.Errorf("invalid JSON: %s", decodeProblem(err))
		}
		return &f, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("invalid YAML: %s", decodeProblem(err))
	}
	f.lines = yamlLines(src)
	return &f, nil
}

// decodeProblem says on one line, in the scenario's words rather than Go's,
// what the decoder refused.
func decodeProblem(err error) string {
	var jsonType *json.UnmarshalTypeError
	if errors.As(err, &jsonType) {
		field := jsonType.Field
		if field == "" {
			field = "the file"
		}
		return fmt.Sprintf("%s: want %s, got a JSON %s", field, typeWords(jsonType.Type.String(), fileTypes), jsonType.Value)
	}
	return strings.TrimPrefix(YAMLProblem(err, fileTypes), "json: ")
}

// fileTypes names a scenario's parts as its author knows them.
var fileTypes = map[string]string{
	"scenario.File":   "a scenario (a map of base, setup and steps)",
	"scenario.Step":   "a step (name, weight, sequence, or a request's fields)",
	"scenario.Call":   "a request (method, path, headers, body, capture)",
	"[]scenario.Step": "a list of steps",
	"[]scenario.Call": "a list of requests",
}

// YAMLProblem says on one line, in the file's words rather than Go's,
// what a YAML decoder refused: yaml.v3 lists its errors a line each
// ("line 5: field request not found in type scenario.Step"), and an
// empty file is io.EOF. names names the file's Go types for its author;
// the basic types are named here.
func YAMLProblem(err error, names map[string]string) string {
	var typeErr *yaml.TypeError
	switch {
	case errors.Is(err, io.EOF):
		return "the file is empty"
	case errors.As(err, &typeErr):
		problems := make([]string, len(typeErr.Errors))
		for i, e := range typeErr.Errors {
			problems[i] = yamlProblem(e, names)
		}
		return strings.Join(problems, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

var (
	yamlUnknownField = regexp.MustCompile(`^(line \d+: )field (\S+) not found in type (\S+)$`)
	yamlWrongKind    = regexp.MustCompile("^(line \\d+: )cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")
	yamlKinds        = map[string]string{"str": "text", "seq": "a list", "map": "a map", "int": "a number", "float": "a number", "bool": "true or false", "null": "nothing"}
	basicTypes       = map[string]string{
		"int": "a whole number", "int64": "a whole number", "float64": "a number", "string": "text", "bool": "true or false",
		"[]int": "a list of whole numbers", "[]float64": "a list of numbers", "[]string": "a list of text",
		"map[string]string": "a map of names to text",
	}
)

// yamlProblem rewrites one of yaml.v3's unmarshal errors.
func yamlProblem(e string, names map[string]string) string {
	if m := yamlUnknownField.FindStringSubmatch(e); m != nil {
		return fmt.Sprintf("%sunknown field %q in %s", m[1], m[2], typeWords(m[3], names))
	}
	if m := yamlWrongKind.FindStringSubmatch(e); m != nil {
		got := yamlKinds[m[2]]
		if got == "" {
			got = m[2]
		}
		if m[3] != "" {
			got += " " + strconv.Quote(m[3])
		}
		return fmt.Sprintf("%swant %s, got %s", m[1], typeWords(m[4], names), got)
	}
	return e
}

// typeWords is a Go type's name in names or basicTypes, or itself.
func typeWords(t string, names map[string]string) string {
	if w, ok := names[t]; ok {
		return w
	}
	if w, ok := basicTypes[t]; ok {
		return w
	}
	return t
}

// yamlLines records the line of each setup request and step, and of each
// of their fields, so that a template error can say where it is.
func yamlLines(src []byte) map[string]int {
	var root yaml.Node
	if yaml.Unmarshal(src, &root) != nil || len(root.Content) == 0 {
		return nil
	}
	lines := map[string]int{}
	var call func(prefix string, n *yaml.Node)
	call = func(prefix string, n *yaml.Node) {
		lines[prefix] = n.Line
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, value := n.Content[i].Value, n.Content[i+1]
			lines[prefix+"/"+key] = value.Line
			switch key {
			case "headers":
				for j := 0; j+1 < len(value.Content); j += 2 {
					lines[prefix+"/header "+value.Content[j].Value] = value.Content[j+1].Line
				}
			case "sequence":
				for j, c := range value.Content {
					call(fmt.Sprintf("%s/sequence/%d", prefix, j), c)
				}
			}
		}
	}
	doc := root.Content[0]
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if key := doc.Content[i].Value; key == "setup" || key == "steps" {
			for j, c := range doc.Content[i+1].Content {
				call(fmt.Sprintf("%s/%d", key, j), c)
			}
		}
	}
	return lines
}

// place says where a call is in its file, for its errors.
type place struct {
	lines    map[string]int
	key      string          // "steps/2", "steps/5/sequence/1"
	captured map[string]bool // every variable the scenario captures
}

// at prefixes "line N: " when the field's line is known.
func (p place) at(field string) string {
	n, ok := p.lines[p.key+"/"+field]
	if !ok {
		n, ok = p.lines[p.key]
	}
	if !ok {
		return ""
	}
	return fmt.Sprintf("line %d: ", n)
}

// Scenario is a compiled scenario; it implements load.Scenario.
type Scenario struct {
	base        *url.URL
	setup       []*call
	steps       []*step
	totalWeight int
	endpoints   []load.EndpointInfo // indexed by call.endpoint
}

// Base is the base URL the scenario's paths are resolved against.
func (s *Scenario) Base() string { return s.base.String() }

type step struct {
	name   string
	weight int
	calls  []*call
}

type call struct {
	where    string // "step add, request 2", for errors
	endpoint int    // index into Scenario.endpoints
	method   string
	path     *template.Template
	headers  map[string]*template.Template
	body     *template.Template
	capture  map[string][]pathPart
}

var funcs = template.FuncMap{
	"rand": func(lo, hi int) (int, error) {
		if hi < lo {
			return 0, fmt.Errorf("rand %d %d: max is below min", lo, hi)
		}
		return lo + rand.IntN(hi-lo+1), nil
	},
	"uuid": func() string {
		var b [16]byte
		_, _ = cryptoRead(b[:])
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		h := hex.EncodeToString(b[:])
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	},
}

var cryptoRead = crand.Read

var methodRE = regexp.MustCompile(`^[A-Z]+$`)

// Compile checks a scenario and prepares its templates.
func Compile(f *File) (*Scenario, error) {
	if f.Base == "" {
		return nil, errors.New("base is missing: give the target's base URL in the file or with --base")
	}
	if err := load.CheckURL(f.Base); err != nil {
		return nil, fmt.Errorf("base: %w", err)
	}
	base, _ := url.Parse(strings.TrimRight(f.Base, "/"))
	s := &Scenario{base: base}
	captured := capturedNames(f)
	for i, c := range f.Setup {
		if err := s.compileSetup(f, i, c, captured); err != nil {
			return nil, err
		}
	}
	if len(f.Steps) == 0 {
		return nil, errors.New("steps: at least one step is needed")
	}
	for i, st := range f.Steps {
		if err := s.compileStep(f, i, st, captured); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// compileSetup adds setup request i, which runs once per user.
func (s *Scenario) compileSetup(f *File, i int, c Step, captured map[string]bool) error {
	if len(c.Sequence) > 0 {
		return fmt.Errorf("setup request %d: a setup request cannot have a sequence", i+1)
	}
	cc, err := compileCall(c.Call, fmt.Sprintf("setup request %d (%s)", i+1, c.Name),
		place{f.lines, fmt.Sprintf("setup/%d", i), captured})
	if err != nil {
		return err
	}
	name := c.Name
	if name == "" {
		name = fmt.Sprintf("setup %d", i+1)
	}
	s.addEndpoint(cc, name, c.Call)
	s.setup = append(s.setup, cc)
	return nil
}

// compileStep adds step i: one request or a sequence, each request an
// endpoint of its own.
func (s *Scenario) compileStep(f *File, i int, st Step, captured map[string]bool) error {
	name := st.Name
	if name == "" {
		name = strconv.Itoa(i + 1)
	}
	where := "step " + name
	if st.Weight < 0 {
		return fmt.Errorf("%s: weight must not be negative", where)
	}
	if st.Weight == 0 {
		st.Weight = 1
	}
	calls := st.Sequence
	switch {
	case len(calls) > 0 && (st.Method != "" || st.Path != ""):
		return fmt.Errorf("%s: give either method/path or a sequence, not both", where)
	case len(calls) == 0:
		calls = []Call{st.Call}
	}
	cs := &step{name: name, weight: st.Weight}
	for j, c := range calls {
		w, key, ep := where, fmt.Sprintf("steps/%d", i), name
		if len(calls) > 1 {
			w, ep = fmt.Sprintf("%s, request %d", where, j+1), fmt.Sprintf("%s/%d", name, j+1)
		}
		if len(st.Sequence) > 0 {
			key = fmt.Sprintf("steps/%d/sequence/%d", i, j)
		}
		cc, err := compileCall(c, w, place{f.lines, key, captured})
		if err != nil {
			return err
		}
		s.addEndpoint(cc, ep, c)
		cs.calls = append(cs.calls, cc)
	}
	s.steps = append(s.steps, cs)
	s.totalWeight += st.Weight
	return nil
}

// addEndpoint gives a call its endpoint: its results are kept apart from
// the other steps'.
func (s *Scenario) addEndpoint(cc *call, name string, c Call) {
	cc.endpoint = len(s.endpoints)
	method := strings.ToUpper(c.Method)
	if method == "" {
		method = "GET"
	}
	s.endpoints = append(s.endpoints, load.EndpointInfo{Name: name, Request: method + " " + c.Path})
}

// Endpoints lists the scenario's endpoints: each setup request, each
// step, and each request of a sequence as "step/1", "step/2".
func (s *Scenario) Endpoints() []load.EndpointInfo { return s.endpoints }

// capturedNames lists the variables some request of the scenario captures.
func capturedNames(f *File) map[string]bool {
	names := map[string]bool{}
	for _, steps := range [][]Step{f.Setup, f.Steps} {
		for _, st := range steps {
			for name := range st.Capture {
				names[name] = true
			}
			for _, c := range st.Sequence {
				for name := range c.Capture {
					names[name] = true
				}
			}
		}
	}
	return names
}

func compileCall(c Call, where string, pos place) (*call, error) {
	if c.Method == "" {
		c.Method = "GET"
	}
	c.Method = strings.ToUpper(c.Method)
	if !methodRE.MatchString(c.Method) {
		return nil, fmt.Errorf("%s: method %q is not an HTTP method", where, c.Method)
	}
	if !strings.HasPrefix(c.Path, "/") {
		return nil, fmt.Errorf("%s: path %q must start with /", where, c.Path)
	}
	if !strings.Contains(c.Path, "{{") {
		if _, err := url.Parse("http://h" + c.Path); err != nil {
			return nil, fmt.Errorf("%s: path %q is not a valid URL path: %v", where, c.Path, errors.Unwrap(err))
		}
	}
	parse := func(field, text string) (*template.Template, error) {
		t, err := template.New(field).Funcs(funcs).Option("missingkey=error").Parse(text)
		if err == nil {
			err = checkLoops(t)
		}
		if err == nil {
			err = checkUses(t, pos.captured)
		}
		if err != nil {
			return nil, fmt.Errorf("%s%s: %s: %v", pos.at(field), where, field, err)
		}
		return t, nil
	}
	cc := &call{where: where, method: c.Method, headers: map[string]*template.Template{}, capture: map[string][]pathPart{}}
	var err error
	if cc.path, err = parse("path", c.Path); err != nil {
		return nil, err
	}
	if c.Body != "" {
		if cc.body, err = parse("body", c.Body); err != nil {
			return nil, err
		}
	}
	for k, v := range c.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			return nil, fmt.Errorf("%s: header name %q is not valid", where, k)
		}
		if cc.headers[http.CanonicalHeaderKey(k)], err = parse("header "+k, v); err != nil {
			return nil, err
		}
	}
	for name, path := range c.Capture {
		p, err := parsePath(path)
		if err != nil {
			return nil, fmt.Errorf("%s: capture %s: %v", where, name, err)
		}
		cc.capture[name] = p
	}
	return cc, nil
}

// NewSession starts a simulated user.
func (s *Scenario) NewSession() load.Session {
	return &session{s: s, vars: map[string]any{}}
}

type session struct {
	s         *Scenario
	vars      map[string]any
	setupDone int
	queue     []*call // the rest of the current sequence
	last      *call
	lastReq   load.Request
	buf       limitedBuffer
}

// Next builds the user's next request: the next setup request until setup
// succeeded, then the rest of the current sequence, then a new weighted
// step.
func (u *session) Next() (*load.Request, error) {
	var c *call
	switch {
	case u.setupDone < len(u.s.setup):
		c = u.s.setup[u.setupDone]
	case len(u.queue) > 0:
		c, u.queue = u.queue[0], u.queue[1:]
	default:
		st := u.s.pick()
		c, u.queue = st.calls[0], st.calls[1:]
	}
	u.last = c
	r, err := u.build(c)
	if err != nil {
		// The request that could not be built still names its endpoint,
		// so the failure is counted under its step.
		return &load.Request{Endpoint: c.endpoint}, err
	}
	return r, nil
}

func (s *Scenario) pick() *step {
	n := rand.IntN(s.totalWeight)
	for _, st := range s.steps {
		if n < st.weight {
			return st
		}
		n -= st.weight
	}
	return s.steps[len(s.steps)-1]
}

// maxExpansion bounds what one template may produce, so that a scenario
// cannot make a request (or the generator's memory) grow without bound.
const maxExpansion = 1 << 20

var errTooLong = fmt.Errorf("expands to more than %d bytes", maxExpansion)

// limitedBuffer fails writes past maxExpansion, which stops the template.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxExpansion {
		return 0, errTooLong
	}
	return b.Buffer.Write(p)
}

func (u *session) exec(t *template.Template) (string, error) {
	u.buf.Reset()
	if err := t.Execute(&u.buf, u.vars); err != nil {
		if errors.Is(err, errTooLong) {
			return "", errTooLong
		}
		return "", err
	}
	return u.buf.String(), nil
}

// checkLoops keeps a template's running time bounded: range only over
// captured values (bounded by the responses they came from), since
// {{range 1000000000}} or {{range rand ...}} would make one request take
// any time at all to build, and no {{template}} calls, which can recurse.
func checkLoops(t *template.Template) error {
	var walk func(n parse.Node) error
	walk = func(n parse.Node) error {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return nil
			}
			for _, c := range n.Nodes {
				if err := walk(c); err != nil {
					return err
				}
			}
		case *parse.RangeNode:
			for _, cmd := range n.Pipe.Cmds {
				for _, arg := range cmd.Args {
					switch arg.(type) {
					case *parse.FieldNode, *parse.VariableNode, *parse.ChainNode, *parse.DotNode:
					default:
						return fmt.Errorf("range over %s: only captured values can be ranged over", arg)
					}
				}
			}
			for _, l := range []*parse.ListNode{n.List, n.ElseList} {
				if err := walk(l); err != nil {
					return err
				}
			}
		case *parse.TemplateNode:
			return fmt.Errorf("{{template %q}}: calling templates is not supported", n.Name)
		case *parse.IfNode:
			for _, l := range []*parse.ListNode{n.List, n.ElseList} {
				if err := walk(l); err != nil {
					return err
				}
			}
		case *parse.WithNode:
			for _, l := range []*parse.ListNode{n.List, n.ElseList} {
				if err := walk(l); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			if err := walk(tt.Tree.Root); err != nil {
				return err
			}
		}
	}
	return nil
}

func (u *session) build(c *call) (*load.Request, error) {
	path, err := u.exec(c.path)
	if err != nil {
		return nil, fmt.Errorf("%s: path: %v", c.where, err)
	}
	r := &u.lastReq
	r.Method, r.URL, r.Body, r.Endpoint = c.method, u.s.base.String()+path, nil, c.endpoint
	// A templated path can still make a URL that does not parse (a
	// captured value with a stray %): say which step, rather than send it.
	if _, err := url.Parse(r.URL); err != nil {
		return nil, fmt.Errorf("%s: path %q does not make a valid URL: %v", c.where, path, errors.Unwrap(err))
	}
	r.Header = make(http.Header, len(c.headers))
	for k, t := range c.headers {
		v, err := u.exec(t)
		if err != nil {
			return nil, fmt.Errorf("%s: header %s: %v", c.where, k, err)
		}
		r.Header[k] = []string{v}
	}
	if c.body != nil {
		b, err := u.exec(c.body)
		if err != nil {
			return nil, fmt.Errorf("%s: body: %v", c.where, err)
		}
		r.Body = []byte(b)
		if _, ok := r.Header["Content-Type"]; !ok {
			r.Header["Content-Type"] = []string{"application/json"}
		}
	}
	return r, nil
}

// maxSetupWait bounds how long a user waits on a setup request's
// Retry-After before trying again: an overloaded service may ask for
// minutes, and a load test's user does not sit out the run.
const maxSetupWait = 10 * time.Second

// Observe captures values from a successful response. A failed setup
// request is repeated, after the answer's Retry-After (at most
// maxSetupWait) when it has one, as a client that respects the service's
// shedding would; a failed request in a sequence abandons the rest of it
// (there is no point checking out after adding to the cart failed). The
// steps' schedule is the load's, so a step's Retry-After is not waited on.
func (u *session) Observe(_ *load.Request, resp load.Response) time.Duration {
	c := u.last
	if c == nil {
		return 0
	}
	ok := resp.Status >= 200 && resp.Status < 300
	if !ok {
		u.queue = nil
		if u.setupDone < len(u.s.setup) && c == u.s.setup[u.setupDone] {
			return min(resp.RetryAfter, maxSetupWait)
		}
		return 0
	}
	body := resp.Body
	if len(c.capture) > 0 {
		var doc any
		if err := json.Unmarshal(body, &doc); err == nil {
			for name, p := range c.capture {
				if v, found := lookup(doc, p); found {
					u.vars[name] = v
				}
			}
		}
	}
	if u.setupDone < len(u.s.setup) && c == u.s.setup[u.setupDone] {
		u.setupDone++
	}
	return 0
}

// --- a small JSON path: $.a.b[0].c ---

type pathPart struct {
	key   string
	index int // -1 for a key
}

func parsePath(p string) ([]pathPart, error) {
	if !strings.HasPrefix(p, "$") {
		return nil, fmt.Errorf("path %q must start with $", p)
	}
	rest := p[1:]
	var parts []pathPart
	for rest != "" {
		switch rest[0] {
		case '.':
			end := strings.IndexAny(rest[1:], ".[")
			if end < 0 {
				end = len(rest) - 1
			}
			key := rest[1 : 1+end]
			if key == "" {
				return nil, fmt.Errorf("path %q has an empty key", p)
			}
			parts = append(parts, pathPart{key: key, index: -1})
			rest = rest[1+end:]
		case '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, fmt.Errorf("path %q has an unclosed [", p)
			}
			i, err := strconv.Atoi(rest[1:end])
			if err != nil || i < 0 {
				return nil, fmt.Errorf("path %q: index %q is not a whole number", p, rest[1:end])
			}
			parts = append(parts, pathPart{index: i})
			rest = rest[end+1:]
		default:
			return nil, fmt.Errorf("path %q: expected . or [ at %q", p, rest)
		}
	}
	return parts, nil
}

func lookup(doc any, p []pathPart) (any, bool) {
	for _, part := range p {
		switch v := doc.(type) {
		case map[string]any:
			if part.index >= 0 {
				return nil, false
			}
			var ok bool
			if doc, ok = v[part.key]; !ok {
				return nil, false
			}
		case []any:
			if part.index < 0 || part.index >= len(v) {
				return nil, false
			}
			doc = v[part.index]
		default:
			return nil, false
		}
	}
	// JSON numbers print as integers when they are whole.
	if f, ok := doc.(float64); ok && f == float64(int64(f)) {
		return int64(f), true
	}
	return doc, true
}

// checkUses refuses, before any load, what would fail every request at
// run time: a variable no request captures, and rand or uuid called with
// the wrong arguments.
func checkUses(t *template.Template, captured map[string]bool) error {
	var err error
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		if err != nil || n == nil {
			return
		}
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c)
			}
		case *parse.CommandNode:
			err = checkCommand(n)
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.FieldNode:
			if name := n.Ident[0]; !captured[name] {
				err = fmt.Errorf("{{.%s}}: no request captures %q%s", name, name, capturedList(captured))
			}
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		}
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			walk(tt.Tree.Root)
		}
	}
	return err
}

func capturedList(captured map[string]bool) string {
	if len(captured) == 0 {
		return " (none are captured: add capture: {NAME: $.field} to the request that returns it)"
	}
	var names []string
	for n := range captured {
		names = append(names, n)
	}
	sort.Strings(names)
	return " (captured: " + strings.Join(names, ", ") + ")"
}

// checkCommand checks the arguments of a call to rand or uuid.
func checkCommand(n *parse.CommandNode) error {
	id, ok := n.Args[0].(*parse.IdentifierNode)
	if !ok {
		return nil
	}
	args := n.Args[1:]
	switch id.Ident {
	case "uuid":
		if len(args) != 0 {
			return fmt.Errorf("{{%s}}: uuid takes no arguments", n)
		}
	case "rand":
		if len(args) != 2 {
			return fmt.Errorf("{{%s}}: rand takes two numbers, MIN and MAX", n)
		}
		var nums [2]*parse.NumberNode
		for i, a := range args {
			num, ok := a.(*parse.NumberNode)
			if !ok {
				return nil // computed at run time
			}
			if !num.IsInt {
				return fmt.Errorf("{{%s}}: rand takes whole numbers", n)
			}
			nums[i] = num
		}
		if nums[1].Int64 < nums[0].Int64 {
			return fmt.Errorf("{{%s}}: max %d is below min %d", n, nums[1].Int64, nums[0].Int64)
		}
	}
	return nil
}
