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
		switch kind := nameKind(name); kind {
		case nameHost:
			if hosts++; !allIn(&hostChar, value) {
				return false
			}
		case nameContentLength:
			n, ok := parseLength(value)
			if lengths++; !ok || lengths > 1 {
				return false
			}
			r.ContentLength = n
		case nameRequestID:
			if r.RequestID == "" {
				r.RequestID = string(value)
			}
		case nameRefused:
			return false
		}
	}
}

// What ParseHead does with a header field, by its name.
const (
	nameOther = iota
	nameHost
	nameContentLength
	nameRequestID
	nameRefused // one the fast path leaves to net/http
)

// nameKind sorts a header name, by its length first: most names are
// none of these.
func nameKind(name []byte) int {
	switch len(name) {
	case 2:
		if equalFold(name, "TE") {
			return nameRefused
		}
	case 4:
		if equalFold(name, "Host") {
			return nameHost
		}
	case 6:
		if equalFold(name, "Expect") {
			return nameRefused
		}
	case 7:
		if equalFold(name, "Upgrade") || equalFold(name, "Trailer") {
			return nameRefused
		}
	case 10:
		if equalFold(name, "Connection") {
			return nameRefused
		}
	case 12:
		if equalFold(name, "X-Request-Id") {
			return nameRequestID
		}
	case 14:
		if equalFold(name, "Content-Length") {
			return nameContentLength
		}
	case 17:
		if equalFold(name, "Transfer-Encoding") {
			return nameRefused
		}
	}
	return nameOther
}

// The characters each part of a head may hold, as tables: a byte's rule
// is one load.
var pathChar, queryChar, tokenChar, valueChar, hostChar = func() (p, q, t, v, h [256]bool) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		u := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.' || b == '_' || b == '~'
		p[c] = u || b == '/'
		q[c] = u || strings.IndexByte("=&+,:@/!$'()*", b) >= 0
		t[c] = u || strings.IndexByte("!#$%&'*+^`|", b) >= 0
		v[c] = b >= ' ' && b <= '~' || b == '\t'
		h[c] = u || b == ':' || b == '[' || b == ']'
	}
	return
}()

// allIn reports whether every byte of b is in the table.
func allIn(table *[256]bool, b []byte) bool {
	for _, c := range b {
		if !table[c] {
			return false
		}
	}
	return true
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
	if !allIn(&queryChar, query) {
		return false
	}
	r.Path = string(path)
	return true
}

// cleanPath: a path of unreserved characters and slashes, starting with
// one, with no empty, "." or ".." segment but a last empty one (a trailing
// slash): ServeMux serves it as it is, neither cleaned nor redirected.
func cleanPath(p []byte) bool {
	if len(p) == 0 || p[0] != '/' || !allIn(&pathChar, p) {
		return false
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

// headerField splits "Name: value" with a token name (no space before the
// colon: obs-fold and such lines start with one) and a value of visible
// ASCII characters, spaces and tabs, trimmed of them.
func headerField(line []byte) (name, value []byte, ok bool) {
	name, value, ok = bytes.Cut(line, []byte{':'})
	if !ok || len(name) == 0 {
		return nil, nil, false
	}
	if !allIn(&tokenChar, name) || !allIn(&valueChar, value) {
		return nil, nil, false
	}
	return name, bytes.Trim(value, " \t"), true
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
