package shedconn

import (
	"bytes"
	"strings"
)

// Request is what the fast path read of a request's head: only a request
// it understands entirely (ParseHead) has one.
type Request struct {
	Method string // GET, POST, PUT, PATCH or DELETE
	Path   string // the target's path, clean, without its query
	// RequestID is the first X-Request-Id value, as net/http would give
	// it (empty: none).
	RequestID string
	// ContentLength is the body's length (0: none).
	ContentLength int64
}

// MaxBody is the largest Content-Length the fast path reads past; a larger
// body goes to net/http, which decides whether to read it or close.
const MaxBody = 64 << 10

// ParseHead parses head, a request's bytes up to and including the blank
// line that ends its header, into r, and reports whether the fast path
// understands the request entirely: an HTTP/1.1 request line with a known
// method and an origin-form target of plain characters whose path is clean
// (ServeMux would redirect any other), header lines each ending in CRLF
// with a token name and a value of visible characters, exactly one Host,
// at most one Content-Length of at most MaxBody, and none of
// Transfer-Encoding, Expect, Upgrade, Connection or TE. Anything else
// (obs-fold, a bare CR or LF, two lengths, a length and a coding, HTTP/1.0,
// a byte it has no rule for) it does not claim: net/http then reads the
// same bytes and answers as it always did. The rules are narrower than
// net/http's on purpose: every request accepted here is one net/http reads
// the same way (FuzzParseHead).
func ParseHead(head []byte, r *Request) bool {
	*r = Request{}
	line, rest, ok := cutLine(head)
	if !ok || !parseRequestLine(line, r) {
		return false
	}
	hosts, lengths := 0, 0
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return false
		}
		if len(line) == 0 {
			return len(rest) == 0 && hosts == 1
		}
		name, value, ok := headerField(line)
		if !ok {
			return false
		}
		switch {
		case equalFold(name, "Host"):
			if hosts++; !hostChars(value) {
				return false
			}
		case equalFold(name, "Content-Length"):
			n, ok := parseLength(value)
			if lengths++; !ok || lengths > 1 {
				return false
			}
			r.ContentLength = n
		case equalFold(name, "X-Request-Id"):
			if r.RequestID == "" {
				r.RequestID = string(value)
			}
		case equalFold(name, "Transfer-Encoding"), equalFold(name, "Expect"), equalFold(name, "Upgrade"),
			equalFold(name, "Connection"), equalFold(name, "TE"), equalFold(name, "Trailer"):
			return false
		}
	}
}

// cutLine cuts b at its first CRLF; a CR or LF alone anywhere before it
// fails.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	line = b[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, b[i+1:], true
}

var methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}

func parseRequestLine(line []byte, r *Request) bool {
	method, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return false
	}
	target, proto, ok := bytes.Cut(rest, []byte{' '})
	if !ok || string(proto) != "HTTP/1.1" {
		return false
	}
	for _, m := range methods {
		if string(method) == m {
			r.Method = m
		}
	}
	if r.Method == "" {
		return false
	}
	path, query, _ := bytes.Cut(target, []byte{'?'})
	if !cleanPath(path) || len(path) > 1024 || len(query) > 1024 {
		return false
	}
	for _, c := range query {
		if !unreserved(c) && strings.IndexByte("=&+,:@/!$'()*", c) < 0 {
			return false
		}
	}
	r.Path = string(path)
	return true
}

// cleanPath: a path of unreserved characters and slashes, starting with
// one, with no empty, "." or ".." segment but a last empty one (a trailing
// slash): ServeMux serves it as it is, neither cleaned nor redirected.
func cleanPath(p []byte) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for _, c := range p {
		if c != '/' && !unreserved(c) {
			return false
		}
	}
	start := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		if seg := string(p[start:i]); seg == "" && i < len(p) || seg == "." || seg == ".." {
			return false
		}
		start = i + 1
	}
	return true
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// headerField splits "Name: value" with a token name (no space before the
// colon: obs-fold and such lines start with one) and a value of visible
// ASCII characters, spaces and tabs, trimmed of them.
func headerField(line []byte) (name, value []byte, ok bool) {
	name, value, ok = bytes.Cut(line, []byte{':'})
	if !ok || len(name) == 0 {
		return nil, nil, false
	}
	for _, c := range name {
		if !tokenChar(c) {
			return nil, nil, false
		}
	}
	for _, c := range value {
		if c < ' ' && c != '\t' || c > '~' {
			return nil, nil, false
		}
	}
	return name, bytes.Trim(value, " \t"), true
}

func tokenChar(c byte) bool {
	return unreserved(c) || strings.IndexByte("!#$%&'*+^`|", c) >= 0
}

func hostChars(v []byte) bool {
	for _, c := range v {
		if !unreserved(c) && c != ':' && c != '[' && c != ']' {
			return false
		}
	}
	return true
}

// parseLength reads a Content-Length of at most MaxBody: digits only, no
// leading zero but in "0".
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 6 || v[0] == '0' && len(v) > 1 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, n <= MaxBody
}

// equalFold compares an ASCII header name with want, case-insensitively.
func equalFold(name []byte, want string) bool {
	if len(name) != len(want) {
		return false
	}
	for i := range name {
		a, b := name[i]|0x20, want[i]|0x20
		if a != b {
			return false
		}
	}
	return true
}
