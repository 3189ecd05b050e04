package load

import (
	"bytes"
	"encoding/json"
	"net/http"
	"unicode/utf8"
)

// An error answer's kind tells apart the failures that share a status: a
// service's 503s may be its own admission control refusing at once, a
// dependency's breaker open, or a deadline passed, and each calls for a
// different fix. The kind is read from the answer's body, which the
// generator keeps only for failed requests; finding it allocates nothing
// once a kind has been seen (the count's map is looked up with the bytes).

// maxKindsPerStatus bounds the kinds kept apart under one status in one
// endpoint's count: a server that writes a request id or a time into its
// messages would otherwise make a kind of every answer. The rest are
// counted under otherKinds.
const maxKindsPerStatus = 8

// otherKinds counts the answers of a status past its maxKindsPerStatus
// kinds.
const otherKinds = "(other messages)"

// maxKind is the longest kind kept, in bytes.
const maxKind = 160

// appendAnswerKind appends to dst the kind of a failed answer of the given
// status with this body, and says whether it is an RFC 9457 problem type
// (a URI, kept whole) rather than a message. The kind is, in
// order: the problem type of a JSON problem document (RFC 9457) when it is
// not "about:blank"; its title, when not merely the status's text (a
// type's title is the same for every occurrence); its detail, or a JSON
// error's "message" or "error"; else the first line of a plain-text body.
// A message's runs of digits are written as one "N", so that messages
// differing only in counts, ids or times are one kind. Nothing is
// appended when the body says nothing (empty, HTML, binary).
func appendAnswerKind(dst []byte, status int, body []byte) (kind []byte, problemType bool) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return dst, false
	}
	if body[0] == '{' {
		p, ok := scanProblem(body)
		if !ok {
			return dst, false
		}
		if t := jsonText(p.typ); len(t) > 0 && string(t) != "about:blank" {
			return appendClipped(dst, t), true
		}
		if t := jsonText(p.title); len(t) > 0 && string(t) != http.StatusText(status) {
			return appendMessage(dst, t), false
		}
		for _, m := range [][]byte{p.detail, p.message, p.err} {
			if t := jsonText(m); len(t) > 0 {
				return appendMessage(dst, t), false
			}
		}
		return dst, false
	}
	// An HTML error page's first line is its doctype: no use as a kind.
	if !utf8.Valid(body) || body[0] == '<' {
		return dst, false
	}
	return appendMessage(dst, body), false
}

// appendMessage appends a message's first line with each run of digits
// as one "N", clipped to maxKind.
func appendMessage(dst, msg []byte) []byte {
	if i := bytes.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	msg = bytes.TrimSpace(msg)
	start := len(dst)
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c >= '0' && c <= '9' {
			if i > 0 && msg[i-1] >= '0' && msg[i-1] <= '9' {
				continue
			}
			c = 'N'
		}
		dst = append(dst, c)
	}
	return clipFrom(dst, start)
}

func appendClipped(dst, s []byte) []byte {
	start := len(dst)
	return clipFrom(append(dst, s...), start)
}

// clipFrom cuts dst[start:] to maxKind bytes, at a rune's start.
func clipFrom(dst []byte, start int) []byte {
	if len(dst)-start <= maxKind {
		return dst
	}
	cut := start + maxKind
	for cut > start && !utf8.RuneStart(dst[cut]) {
		cut--
	}
	return dst[:cut]
}

// problemFields are the raw (still escaped) top-level string fields of a
// JSON object that name an error.
type problemFields struct {
	typ, title, detail, message, err []byte
}

// scanProblem reads the top-level string fields of the JSON object in b
// without decoding the rest (nested objects and arrays are skipped). It
// reports false for what is not a well-formed object as far as it reads.
func scanProblem(b []byte) (p problemFields, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return p, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return p, true
	}
	for {
		key, j, ok := scanString(b, i)
		if !ok {
			return p, false
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return p, false
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '"' {
			val, j, ok := scanString(b, i)
			if !ok {
				return p, false
			}
			switch string(key) {
			case "type":
				p.typ = val
			case "title":
				p.title = val
			case "detail":
				p.detail = val
			case "message":
				p.message = val
			case "error":
				p.err = val
			}
			i = j
		} else if i, ok = skipValue(b, i); !ok {
			return p, false
		}
		i = skipSpace(b, i)
		switch {
		case i < len(b) && b[i] == ',':
			i = skipSpace(b, i+1)
		case i < len(b) && b[i] == '}':
			return p, true
		default:
			return p, false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString reads the JSON string that starts at b[i]: its raw content,
// escapes undecoded, and the index after its closing quote.
func scanString(b []byte, i int) (raw []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return b[i+1 : j], j + 1, true
		}
	}
	return nil, len(b), false
}

// skipValue skips the value that is not a string starting at b[i] (an
// object or an array with whatever strings they hold, a number, true,
// false or null) and returns the index after it.
func skipValue(b []byte, i int) (int, bool) {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			_, j, ok := scanString(b, i)
			if !ok {
				return i, false
			}
			i = j
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i, true // the end of the object holding the value
			}
			if depth--; depth == 0 {
				return i + 1, true
			}
		case ',':
			if depth == 0 {
				return i, true
			}
		}
		i++
	}
	return i, false // the object never closed
}

// jsonText is a raw JSON string's text: itself when it has no escapes,
// else decoded (which allocates; problem documents rarely escape).
func jsonText(raw []byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw
	}
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	var s string
	if json.Unmarshal(q, &s) != nil {
		return nil
	}
	return []byte(s)
}
