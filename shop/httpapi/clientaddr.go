package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr finds the address a request came from. Behind a reverse proxy
// (nginx) every connection comes from the proxy, so the proxy's
// X-Forwarded-For or X-Real-IP names the client; but any client can send
// those headers, so they are believed only when the connection comes from
// a trusted proxy.
type clientAddr struct {
	trusted []netip.Prefix
}

func (c clientAddr) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// of returns the client's address: the peer's, or, when the peer is a
// trusted proxy, the right-most X-Forwarded-For entry that is not itself a
// trusted proxy (entries further left were written by the client and prove
// nothing), else X-Real-IP.
func (c clientAddr) of(r *http.Request) netip.Addr {
	peer := peerAddr(r)
	if !peer.IsValid() || !c.isTrusted(peer) {
		return peer
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer // a malformed chain: trust none of it
		}
		a = a.Unmap()
		if !c.isTrusted(a) {
			return a
		}
	}
	if a, err := netip.ParseAddr(strings.TrimSpace(r.Header.Get("X-Real-IP"))); err == nil {
		return a.Unmap()
	}
	return peer
}

func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// ParseTrustedProxies reads a comma-separated list of addresses and CIDR
// prefixes (127.0.0.1, 10.0.0.0/8, ::1); an empty list trusts no proxy.
func ParseTrustedProxies(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
