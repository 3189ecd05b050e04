package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/perfscale/perfscale/shop"
)

// maxBodyBytes caps every request body; the largest legitimate body (a
// checkout with notes) is well under 2 KiB.
const maxBodyBytes = 64 << 10

// encode writes v as JSON with the given status.
func encode(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n')) //nolint:errcheck // the client went away
	return nil
}

func encodeTo(w io.Writer, v any) error {
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	return nil
}

// decode reads a JSON body into a value of type T. It insists on a JSON
// content type, a body within maxBodyBytes (counted over every byte sent,
// whitespace included), exactly one JSON object whose keys are T's field
// names spelt exactly and each given once, so a typo, a case variant or a
// repeated field is an error rather than a silently ignored or overridden
// setting.
func decode[T any](w http.ResponseWriter, r *http.Request) (T, error) {
	var v T
	body, err := readBody(w, r)
	if err != nil {
		return v, err
	}
	if len(body) > 0 { // an empty body is 400 whatever its type
		if err := jsonContentType(r); err != nil {
			return v, err
		}
	}
	return decodeJSON[T](body)
}

// readBody reads the whole body, sized or chunked alike, up to
// maxBodyBytes; more is errBodyTooLarge whatever the bytes are.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, errBodyTooLarge
	case err != nil:
		return nil, badBody(err)
	}
	return body, nil
}

// bodyError is a request body that could not be read whole: the client's
// doing (it stalled, hung up mid-body or broke the chunked coding), so a
// 4xx, not a failure of the service. net/http cancels the request's
// context when its read fails, but the client is usually still there to
// read the answer: the request is answered and counted with this status,
// not as abandoned.
type bodyError struct {
	status int
	detail string
	err    error
}

func (e *bodyError) Error() string { return "read request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

func badBody(err error) error {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &bodyError{http.StatusRequestTimeout, "the request body did not arrive in time: send it whole, at once", err}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &bodyError{http.StatusBadRequest, "the request body ended before its Content-Length or final chunk", err}
	}
	return &bodyError{http.StatusBadRequest, "the request body could not be read: malformed chunked transfer coding or framing", err}
}

// jsonContentType insists on JSON, and on UTF-8 (RFC 8259: JSON
// exchanged between systems is UTF-8) when a charset is named: a body sent
// as UTF-16 would otherwise be read as bytes it is not.
func jsonContentType(r *http.Request) error {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && mt != "application/problem+json") {
		return errUnsupportedMediaType
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return shop.Errorf(shop.EINVALID, "the request body must be JSON in UTF-8: leave out Content-Type's charset or make it utf-8")
	}
	return nil
}

// singleHeader is the value of a header the request may send once: two
// values are refused rather than one of them picked.
func singleHeader(r *http.Request, name string) (string, error) {
	switch v := r.Header.Values(name); len(v) {
	case 0:
		return "", nil
	case 1:
		return v[0], nil
	default:
		return "", shop.Errorf(shop.EINVALID, "send one %s header, not %d", name, len(v))
	}
}

// decodeJSON is decode without the HTTP parts, so it can be fuzzed alone.
func decodeJSON[T any](body []byte) (T, error) {
	var v T
	if len(body) > maxBodyBytes {
		return v, errBodyTooLarge
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, badJSON(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return v, shop.Errorf(shop.EINVALID, "the request body must hold a single JSON object, with nothing after it")
	}
	// encoding/json matches names regardless of case and lets the last of
	// repeated keys win; the API takes neither.
	if err := exactKeys(body, jsonFieldNames[T]()); err != nil {
		return v, err
	}
	return v, nil
}

// exactKeys checks that the object in body (already known to be valid
// JSON) has only keys from names, spelt exactly, each at most once.
func exactKeys(body []byte, names map[string]bool) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil // not an object: the decoder has judged it already
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return badJSON(err)
		}
		key, _ := t.(string)
		if !names[key] {
			return shop.Errorf(shop.EINVALID, "unknown field %q: field names are case-sensitive (allowed: %s)", key, strings.Join(sortedKeys(names), ", "))
		}
		if seen[key] {
			return shop.Errorf(shop.EINVALID, "field %q is given more than once", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return badJSON(err)
		}
	}
	return nil
}

// jsonFieldNames are the JSON names of T's fields.
func jsonFieldNames[T any]() map[string]bool {
	names := map[string]bool{}
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct {
		return names
	}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names[name] = true
	}
	return names
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// errUnsupportedMediaType and errBodyTooLarge map to their own statuses.
var (
	errUnsupportedMediaType = errors.New("unsupported media type")
	errBodyTooLarge         = errors.New("body too large")
)

// badJSON turns a decoder error into a message a client can act on.
func badJSON(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		return shop.Errorf(shop.EINVALID, "the request body is empty: send a JSON object")
	case errors.As(err, &tooBig):
		return errBodyTooLarge
	case errors.As(err, &syn):
		return shop.Errorf(shop.EINVALID, "the request body is not valid JSON (at byte %d): %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return shop.Errorf(shop.EINVALID, "field %q must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
		}
		return shop.Errorf(shop.EINVALID, "the request body must be a JSON object, not %s", typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return shop.Errorf(shop.EINVALID, "the request body is cut short: it is not complete JSON")
	}
	// encoding/json reports unknown fields only as text.
	return shop.Errorf(shop.EINVALID, "the request body is not acceptable: %v", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64", "int32", "uint", "uint64":
		return "an integer"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	}
	return "a " + goKind
}

// problem is an RFC 9457 problem details document.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	Code      string `json:"code,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// Items lists the cart lines checkout could not reserve.
	Items []shop.Shortage `json:"items,omitempty"`
	// Cart is the cart at current prices when checkout refused a total
	// the customer saw before a price change.
	Cart *shop.Cart `json:"cart,omitempty"`
	// MissingShards names every shard when an admin read over all of them
	// got no answer.
	MissingShards []missingShard `json:"missing_shards,omitempty"`
}

// shedProblem is admission control's refusal (errShed): nothing was done,
// so even a checkout without an Idempotency-Key may be sent again.
var shedProblem = problem{Type: "about:blank", Title: http.StatusText(http.StatusServiceUnavailable), Status: http.StatusServiceUnavailable,
	Detail: "the service is overloaded and refused this request before doing any of it; retry after the time in Retry-After", Code: shop.EUNAVAILABLE}

// problemJSON is a problem's Content-Type value, shared by refusals (net/http
// only reads a header's values).
var problemJSON = []string{"application/problem+json"}

// shedHead and shedCode are shedProblem's JSON up to its instance, and its
// code: the same for every refusal, so encoded once.
var shedHead, shedCode = func() ([]byte, []byte) {
	p := shedProblem
	p.Code = ""
	head, _ := json.Marshal(p)
	code, _ := json.Marshal(shedProblem.Code)
	return head[:len(head)-1], append([]byte(`,"code":`), code...)
}()

// writeShed writes shedProblem as writeProblem would, byte for byte, but
// without reflection: a replica at ten times its capacity refuses nine
// requests for each one it serves, so a refusal must cost a small part of
// a served request (docs/reliability.md).
//
// id is the request's id (responseID); it returns the bytes written.
func writeShed(w http.ResponseWriter, r *http.Request, id string) int {
	b := appendShed(make([]byte, 0, len(shedHead)+len(shedCode)+len(r.URL.Path)+len(id)+48), r.URL.Path, id)
	h := w.Header()
	h["Content-Type"] = problemJSON
	h["Content-Length"] = contentLength(len(b))
	delete(h, "Etag")
	delete(h, "Cache-Control")
	w.WriteHeader(shedProblem.Status)
	n, _ := w.Write(b) // #nosec G705 -- JSON (application/problem+json), the path and id escaped as encoding/json escapes them, <, > and & included
	return n
}

// appendShed appends shedProblem's body for a request of path and id.
func appendShed(b []byte, path, id string) []byte {
	b = append(b, shedHead...)
	if path != "" {
		b = append(b, `,"instance":`...)
		b = appendJSONString(b, path)
	}
	b = append(b, shedCode...)
	if id != "" {
		b = append(b, `,"request_id":`...)
		b = appendJSONString(b, id)
	}
	return append(b, '}', '\n')
}

// contentLengths are the Content-Length values of the lengths a refusal's
// body has (about 250 to 400 bytes: the path and id vary), made once and
// shared (net/http only reads a header's values): a refusal then spends no
// allocation on its length.
var contentLengths = func() [][]string {
	v := make([][]string, 1024)
	for n := range v {
		v[n] = []string{strconv.Itoa(n)}
	}
	return v
}()

func contentLength(n int) []string {
	if n < len(contentLengths) {
		return contentLengths[n]
	}
	return []string{strconv.Itoa(n)}
}

// appendJSONString appends s as encoding/json writes a string: printable
// ASCII other than the quote, the backslash and the HTML characters json
// escapes goes as it is; a string with anything else is left to json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func writeProblem(w http.ResponseWriter, r *http.Request, p problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	p.Instance = r.URL.Path
	p.RequestID = requestID(r.Context())
	b, _ := json.Marshal(p) // strings, ints and shortages always marshal
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	h.Del("ETag")
	h.Del("Cache-Control")
	w.WriteHeader(p.Status)
	w.Write(append(b, '\n')) //nolint:errcheck
}
