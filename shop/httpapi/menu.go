package httpapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/andybalholm/brotli"

	"github.com/perfscale/perfscale/shop"
)

// menuCacheControl lets a shared cache (nginx, a CDN) serve the menu for
// one second and then revalidate it (a 304 costs the service no store call
// and no body), serving the stale copy for at most one more second while
// it revalidates in the background, so a burst of readers never waits for
// the service; with the version poll's one second, a client sees a catalog
// change within about three seconds. No stale-if-error: a cache does not
// serve the menu stale when the service cannot be asked.
const menuCacheControl = "public, max-age=1, stale-while-revalidate=1"

// listCacheControl is the same for item pages, which hold no session's
// data: the catalog's and the stock's one-second staleness, at the edge.
const listCacheControl = menuCacheControl

// encodedMenu is the menu document of one catalog version, encoded once
// and compressed once per content coding, so a warm request only picks the
// bytes. Each representation has its own strong ETag.
type encodedMenu struct {
	version  int64
	variants [numCodings]menuVariant
	// built is when this copy was made: its Age when served stale.
	built time.Time
}

type menuVariant struct {
	etag string
	body []byte
	// The response headers, built once: a warm request assigns these
	// slices instead of allocating each value (net/http only reads them).
	ok, notModified []headerField
}

type headerField struct {
	key   string // canonical
	value []string
}

// coding is a content coding the menu is kept in, best first.
type coding int

const (
	codingBrotli coding = iota
	codingGzip
	codingIdentity
	numCodings
)

var codingNames = [numCodings]string{"br", "gzip", "identity"}

func menuETag(version int64, c coding) string {
	suffix := ""
	switch c {
	case codingBrotli:
		suffix = "-br"
	case codingGzip:
		suffix = "-gzip"
	}
	return `"menu-` + strconv.FormatInt(version, 10) + suffix + `"`
}

func (s *server) handleMenu(w http.ResponseWriter, r *http.Request) error {
	c := negotiate(r.Header.Get("Accept-Encoding"))
	var m *encodedMenu
	var err error
	if s.menuPerRequest {
		m, err = s.menuForOneRequest(r.Context(), c)
	} else {
		m, err = s.currentMenu(r.Context())
	}
	stale := err == nil && s.stale != nil && s.stale()
	if err != nil {
		if m = s.menu.Load(); m == nil || !dependencyFailed(err) {
			return err
		}
		stale = true
	}
	v := &m.variants[c]
	h := w.Header()
	if stale {
		markStale(h, m.built)
	}
	if etagMatches(r.Header.Get("If-None-Match"), v.etag) {
		setHeaders(h, v.notModified)
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	setHeaders(h, v.ok)
	w.Write(v.body) //nolint:errcheck // the client went away
	return nil
}

// dependencyFailed is an error of the database (or of the wait for it),
// not a client that left: the last good copy may stand in.
func dependencyFailed(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	code := shop.ErrorCode(err)
	return code == shop.EUNAVAILABLE || code == shop.EINTERNAL
}

// markStale says the menu is the last good copy, built at built, served
// while the database cannot be read: its Age in seconds (RFC 9111 5.1),
// and the Warning code RFC 7234 had for it (110, "Response is Stale"),
// which clients and caches that log warnings still show.
func markStale(h http.Header, built time.Time) {
	h.Set("Age", strconv.FormatInt(max(0, int64(time.Since(built).Seconds())), 10))
	h.Set("Warning", staleWarning)
}

// staleWarning is RFC 7234's warning for a stale response.
const staleWarning = `110 - "Response is Stale"`

func setHeaders(h http.Header, fields []headerField) {
	for _, f := range fields {
		h[f.key] = f.value
	}
}

// currentMenu returns the encoded menu of the catalog version the catalog
// knows (in memory, when the cache layer is in front). A missing or older
// menu is built once however many requests wait for it: the first builds,
// the others share its result, each waiting at most the request timeout.
// Without the cache layer, reading the version is a point read of one row,
// bounded by the store's own timeouts.
func (s *server) currentMenu(ctx context.Context) (*encodedMenu, error) {
	version, err := s.catalog.CatalogVersion(ctx)
	if err != nil {
		return nil, err
	}
	// Versions only grow: a menu built from a newer version than the one
	// known here (the poll has not seen it yet) is served as it is.
	if m := s.menu.Load(); m != nil && m.version >= version {
		return m, nil
	}
	// The build is shared by every waiting request, so no request's
	// deadline or cancellation may cut it short: it runs on its own clock
	// (a million-item catalog takes tens of seconds on two busy cores),
	// and each request waits for it only as long as its own deadline.
	ch := s.menuBuild.DoChan("menu", func() (any, error) {
		if m := s.menu.Load(); m != nil && m.version >= version {
			return m, nil
		}
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), menuBuildTimeout)
		defer cancel()
		m, err := s.buildMenu(bctx, version)
		if err != nil {
			return nil, err
		}
		if old := s.menu.Load(); old == nil || old.version < m.version {
			s.menu.Store(m)
		}
		return m, nil
	})
	// The route has no request-wide deadline (see routePlan): the wait
	// for a build is bounded here, by the route's timeout.
	wait, cancel := context.WithTimeout(ctx, s.menuTimeout)
	defer cancel()
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*encodedMenu), nil
	case <-wait.Done():
		return nil, shop.Errorf(shop.EUNAVAILABLE, "the menu is being built; try again shortly")
	}
}

// menuForOneRequest is the no-cache anti-pattern's menu (shop
// --antipattern no-cache): read from the catalog and encoded in the one
// coding the request takes, at the default level as a compressing
// middleware would, within the request's time limit, and kept for no
// other request.
func (s *server) menuForOneRequest(ctx context.Context, c coding) (*encodedMenu, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	menu, err := s.catalog.Menu(ctx)
	if err != nil {
		return nil, err
	}
	body, err := jsonBody(menu)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	switch c {
	case codingBrotli:
		bw := brotli.NewWriterLevel(&buf, brotli.DefaultCompression)
		bw.Write(body) //nolint:errcheck // a bytes.Buffer does not fail
		err = bw.Close()
		body = buf.Bytes()
	case codingGzip:
		gw := gzip.NewWriter(&buf)
		gw.Write(body) //nolint:errcheck
		err = gw.Close()
		body = buf.Bytes()
	}
	if err != nil {
		return nil, fmt.Errorf("compress the menu: %w", err)
	}
	m := &encodedMenu{version: menu.Version, built: time.Now()}
	m.variants[c] = newMenuVariant(menu.Version, c, body)
	return m, nil
}

// menuBuildTimeout bounds one build of the menu document.
const menuBuildTimeout = 5 * time.Minute

// buildMenu fetches the encoded menu of version from the replicas' shared
// cache, or builds it from the catalog and shares it.
func (s *server) buildMenu(ctx context.Context, version int64) (*encodedMenu, error) {
	if s.sharedMenus != nil {
		if bodies, ok := s.sharedMenus.GetMenu(ctx, version); ok {
			if m, ok := menuFromShared(version, bodies); ok {
				return m, nil
			}
		}
	}
	menu, err := s.catalog.Menu(ctx)
	if err != nil {
		return nil, err
	}
	m, err := encodeMenu(menu)
	if err != nil {
		return nil, err
	}
	if s.sharedMenus != nil {
		bodies := make(map[string][]byte, numCodings)
		for c := range numCodings {
			bodies[codingNames[c]] = m.variants[c].body
		}
		s.sharedMenus.PutMenu(ctx, m.version, bodies)
	}
	return m, nil
}

// menuFromShared rebuilds an encoded menu from the shared cache's bytes;
// ok is false when a coding is missing.
func menuFromShared(version int64, bodies map[string][]byte) (*encodedMenu, bool) {
	m := &encodedMenu{version: version, built: time.Now()}
	for c := range numCodings {
		b, ok := bodies[codingNames[c]]
		if !ok {
			return nil, false
		}
		m.variants[c] = newMenuVariant(version, c, b)
	}
	return m, true
}

// encodeMenu encodes the menu and compresses it. A menu of a few tens of KB
// gets the best compression (tens of ms, once per version); a huge catalog
// gets a faster level so a rebuild stays within seconds.
func encodeMenu(menu *shop.Menu) (*encodedMenu, error) {
	body, err := jsonBody(menu)
	if err != nil {
		return nil, err
	}
	gzLevel, brQuality := gzip.BestCompression, brotli.BestCompression
	if len(body) > 1<<20 {
		gzLevel, brQuality = gzip.DefaultCompression, 5
	}
	// The two compressions run side by side: on a huge catalog each takes
	// seconds.
	var gz, br bytes.Buffer
	var gzErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		gw, _ := gzip.NewWriterLevel(&gz, gzLevel) // the level is valid
		gw.Write(body)                             //nolint:errcheck // a bytes.Buffer does not fail
		gzErr = gw.Close()
	}()
	bw := brotli.NewWriterLevel(&br, brQuality)
	bw.Write(body) //nolint:errcheck
	brErr := bw.Close()
	<-done
	if err := errors.Join(gzErr, brErr); err != nil {
		return nil, fmt.Errorf("compress the menu: %w", err)
	}
	m := &encodedMenu{version: menu.Version, built: time.Now()}
	for c, b := range [numCodings][]byte{br.Bytes(), gz.Bytes(), body} {
		m.variants[c] = newMenuVariant(menu.Version, coding(c), b)
	}
	return m, nil
}

// newMenuVariant is one coding's bytes of a version's menu with its
// response headers.
func newMenuVariant(version int64, c coding, b []byte) menuVariant {
	v := menuVariant{etag: menuETag(version, c), body: b}
	v.notModified = []headerField{
		{"Cache-Control", []string{menuCacheControl}},
		{"Vary", []string{"Accept-Encoding"}},
		{"Etag", []string{v.etag}},
	}
	v.ok = append(v.notModified,
		headerField{"Content-Type", []string{"application/json"}},
		headerField{"Content-Length", []string{strconv.Itoa(len(b))}})
	if c != codingIdentity {
		v.ok = append(v.ok, headerField{"Content-Encoding", []string{codingNames[c]}})
	}
	return v
}

// negotiate picks the menu's content coding from Accept-Encoding (RFC 9110
// 12.5.3): the acceptable coding with the highest q-value, brotli before
// gzip before identity on a tie. Identity is acceptable unless refused.
func negotiate(accept string) coding {
	if accept == "" {
		return codingIdentity
	}
	q := [numCodings]float64{-1, -1, -1} // -1: not mentioned
	star := -1.0
	for rest := accept; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		name, params, _ := strings.Cut(part, ";")
		name = strings.TrimSpace(name)
		weight := 1.0
		for params != "" {
			var p string
			p, params, _ = strings.Cut(params, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 && f <= 1 {
					weight = f
				}
			}
		}
		switch {
		case strings.EqualFold(name, "br"):
			q[codingBrotli] = weight
		case strings.EqualFold(name, "gzip"), strings.EqualFold(name, "x-gzip"):
			q[codingGzip] = weight
		case strings.EqualFold(name, "identity"):
			q[codingIdentity] = weight
		case name == "*":
			star = weight
		}
	}
	for c := range q {
		if q[c] < 0 {
			q[c] = star // "*" covers what is not named; -1 if absent
		}
	}
	if q[codingIdentity] < 0 {
		q[codingIdentity] = 0.001 // acceptable unless refused
	}
	best := coding(-1)
	for c := codingBrotli; c < numCodings; c++ { // preference order: ties keep the earlier
		if q[c] > 0 && (best < 0 || q[c] > q[best]) { // #nosec G602 -- best >= 0 when indexed
			best = c
		}
	}
	if best < 0 {
		return codingIdentity // nothing acceptable: identity rather than a 406
	}
	return best
}

// etagMatches implements If-None-Match's weak comparison.
func etagMatches(header, etag string) bool {
	for rest := header; rest != ""; {
		var t string
		t, rest, _ = strings.Cut(rest, ",")
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
