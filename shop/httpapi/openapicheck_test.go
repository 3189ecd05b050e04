package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// The end-to-end tests talk to the service through a transport that
// holds every request and response to /openapi.json (kin-openapi's
// openapi3filter): a status, a header or a body field the document does
// not describe fails the test that caused it.

var (
	specOnce   sync.Once
	specRouter routers.Router
	specErr    error
)

// loadSpec reads the document the service serves. Every object schema
// that does not say otherwise is closed (additionalProperties: false) for
// the check, so a field the document leaves out is an error here.
func loadSpec() (routers.Router, error) {
	specOnce.Do(func() {
		raw, err := os.ReadFile("openapi.json")
		if err != nil {
			specErr = err
			return
		}
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(raw)
		if err != nil {
			specErr = err
			return
		}
		if err := doc.Validate(context.Background()); err != nil {
			specErr = err
			return
		}
		seen := map[*openapi3.Schema]bool{}
		var closeSchema func(s *openapi3.SchemaRef)
		closeSchema = func(s *openapi3.SchemaRef) {
			if s == nil || s.Value == nil || seen[s.Value] {
				return
			}
			v := s.Value
			seen[v] = true
			if v.Type.Is("object") && v.AdditionalProperties.Has == nil && v.AdditionalProperties.Schema == nil {
				no := false
				v.AdditionalProperties.Has = &no
			}
			for _, p := range v.Properties {
				closeSchema(p)
			}
			closeSchema(v.Items)
			for _, x := range append(append(v.AllOf, v.AnyOf...), v.OneOf...) {
				closeSchema(x)
			}
		}
		for _, s := range doc.Components.Schemas {
			closeSchema(s)
		}
		for _, item := range doc.Paths.Map() {
			for _, op := range item.Operations() {
				for _, r := range op.Responses.Map() {
					if r.Value != nil {
						for _, mt := range r.Value.Content {
							closeSchema(mt.Schema)
						}
					}
				}
				if op.RequestBody != nil && op.RequestBody.Value != nil {
					for _, mt := range op.RequestBody.Value.Content {
						closeSchema(mt.Schema)
					}
				}
			}
		}
		doc.Servers = nil // match any host: the tests listen on :0
		specRouter, specErr = gorillamux.NewRouter(doc)
	})
	return specRouter, specErr
}

// transportHeaders are set by the HTTP layer on every response and are not
// the API's to describe.
var transportHeaders = map[string]bool{
	"Content-Type": true, "Content-Length": true, "Date": true, "Connection": true,
	"Transfer-Encoding": true, "Keep-Alive": true,
}

// openAPICheck is an http.RoundTripper that validates each exchange.
type openAPICheck struct {
	t    testing.TB
	next http.RoundTripper
}

func (c openAPICheck) RoundTrip(req *http.Request) (*http.Response, error) {
	c.t.Helper()
	router, err := loadSpec()
	if err != nil {
		c.t.Fatalf("openapi.json: %v", err)
	}
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	res, err := c.next.RoundTrip(req)
	if err != nil {
		return res, err
	}
	resBody, err := io.ReadAll(res.Body)
	res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(resBody))
	if err != nil {
		return res, nil
	}
	c.check(router, req, reqBody, res, resBody)
	return res, nil
}

func (c openAPICheck) check(router routers.Router, req *http.Request, reqBody []byte, res *http.Response, resBody []byte) {
	c.t.Helper()
	what := req.Method + " " + req.URL.RequestURI()
	// A copy of the request for the validator, which reads the body.
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := router.FindRoute(vreq)
	if err != nil {
		// A path or method the document does not have must be refused.
		if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusMethodNotAllowed {
			c.t.Errorf("openapi: %s is not in the document but was answered %d", what, res.StatusCode)
		}
		return
	}
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil && res.StatusCode < 400 {
		c.t.Errorf("openapi: %s does not match the document (%v) but was answered %d", what, err, res.StatusCode)
	}
	opts := *in.Options
	switch res.Header.Get("Content-Encoding") {
	case "":
	case "gzip":
		if zr, err := gzip.NewReader(bytes.NewReader(resBody)); err == nil {
			if plain, err := io.ReadAll(zr); err == nil {
				resBody = plain
			}
		}
	default: // another coding: the body's schema is checked uncompressed elsewhere
		opts.ExcludeResponseBody = true
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
		Body: io.NopCloser(bytes.NewReader(resBody)), Options: &opts,
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		c.t.Errorf("openapi: the answer %d to %s does not match the document: %v\n%.300s", res.StatusCode, what, err, resBody)
	}
	// Every header the answer carries is described (on this response, or
	// as one the service sends on every answer).
	resp := route.Operation.Responses.Status(res.StatusCode)
	if resp == nil {
		resp = route.Operation.Responses.Default()
	}
	var undescribed []string
	for name := range res.Header {
		if transportHeaders[name] || commonHeaders[name] {
			continue
		}
		if resp == nil || resp.Value == nil || !hasHeader(resp.Value.Headers, name) {
			undescribed = append(undescribed, name)
		}
	}
	if len(undescribed) > 0 {
		sort.Strings(undescribed)
		c.t.Errorf("openapi: the answer %d to %s has headers the document does not describe: %s", res.StatusCode, what, strings.Join(undescribed, ", "))
	}
}

func hasHeader(h openapi3.Headers, name string) bool {
	for k := range h {
		if http.CanonicalHeaderKey(k) == name {
			return true
		}
	}
	return false
}

// commonHeaders are on every answer; the document's description names them.
var commonHeaders = map[string]bool{"X-Request-Id": true, "X-Replica": true}
