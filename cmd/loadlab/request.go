package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/perfscale/perfscale/loadlab/load"
)

// newRequest builds the one request of a URL target: its method, its
// 'Name: value' headers and its body.
func newRequest(method, rawURL string, headers []string, body []byte) (*load.Request, error) {
	if err := load.CheckURL(rawURL); err != nil {
		return nil, err
	}
	req := &load.Request{Method: strings.ToUpper(method), URL: rawURL, Header: http.Header{}, Body: body}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("header %q must look like 'Name: value'", h)
		}
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	return req, nil
}

// bodyArg reads a --body value: @FILE is the file's content (as in curl),
// anything else the body itself.
func bodyArg(v string) ([]byte, error) {
	if path, ok := strings.CutPrefix(v, "@"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--body %s: %v", v, err)
		}
		return b, nil
	}
	return []byte(v), nil
}
