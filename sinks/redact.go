package sinks

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
)

// minSecretPart is the shortest run of a secret's bytes that is cut out of
// quoted text: a server that echoes only part of a token (its end cut at
// a length limit, or just its first characters) must not leak that part.
const minSecretPart = 6

// minSecret is the length below which a value is no secret worth the
// name: cutting every "1" or "abc" out of error pages would help no one.
const minSecret = 4

// publicHeaders are headers whose values say nothing secret: cutting
// "application/json" out of every error page would make them unreadable.
var publicHeaders = map[string]bool{
	"Content-Type": true, "Content-Encoding": true, "Accept": true,
	"Accept-Encoding": true, "User-Agent": true, "Host": true,
}

// A redactor cuts configured secrets out of text a server sent back.
type redactor struct {
	secrets [][]byte
	longest int
}

// newRedactor collects what a server might echo that must not reach the
// logs: every header value but public ones, and each word in it (a bare
// token without its "Bearer "); the URL's user name and password, also as
// the basic auth header carries them; each path segment, the query and
// each query value, raw and decoded.
func newRedactor(h http.Header, u *url.URL) *redactor {
	r := &redactor{}
	for name, vs := range h {
		if publicHeaders[http.CanonicalHeaderKey(name)] {
			continue
		}
		for _, v := range vs {
			r.add(v)
			for _, w := range strings.FieldsFunc(v, func(c rune) bool {
				return c == ' ' || c == '\t' || c == ',' || c == ';' || c == '='
			}) {
				r.add(w)
			}
		}
	}
	if u.User != nil {
		name := u.User.Username()
		r.add(name)
		r.add(url.QueryEscape(name))
		if pass, ok := u.User.Password(); ok {
			r.add(pass)
			r.add(url.QueryEscape(pass))
			r.add(base64.StdEncoding.EncodeToString([]byte(name + ":" + pass)))
		}
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		r.add(seg)
		if v, err := url.PathUnescape(seg); err == nil {
			r.add(v)
		}
	}
	r.add(u.Opaque)
	r.add(u.RawQuery)
	for _, kv := range strings.Split(u.RawQuery, "&") {
		_, v, _ := strings.Cut(kv, "=")
		r.add(v)
		if d, err := url.QueryUnescape(v); err == nil {
			r.add(d)
		}
	}
	return r
}

func (r *redactor) add(s string) {
	if len(s) < minSecret {
		return
	}
	for _, have := range r.secrets {
		if string(have) == s {
			return
		}
	}
	r.secrets = append(r.secrets, []byte(s))
	r.longest = max(r.longest, len(s))
}

// window is how much of a text to read to quote limit bytes of it: enough
// to see whole any secret that starts within the limit.
func (r *redactor) window(limit int) int { return limit + r.longest }

// quote returns at most the first limit bytes of text, each run of bytes
// it shares with a secret (the whole secret, or minSecretPart bytes of it
// or more) replaced by "[redacted]". Bytes of text past limit are looked
// at too, so a secret that the limit cuts is recognised; a run that
// crosses the limit is redacted whole. cut reports that text was longer
// than what is returned.
func (r *redactor) quote(text []byte, limit int) (s string, cut bool) {
	n := len(text)
	if len(r.secrets) == 0 {
		if n > limit {
			return string(text[:limit]), true
		}
		return string(text), false
	}
	// diff marks redacted runs: +1 where one starts, -1 past its end.
	diff := make([]int, n+1)
	run := make([]int, n) // longest run shared with the secret ending at i
	var prev, cur []int
	for _, sec := range r.secrets {
		need := min(len(sec), minSecretPart)
		if cap(prev) < len(sec)+1 {
			prev, cur = make([]int, len(sec)+1), make([]int, len(sec)+1)
		}
		prev, cur = prev[:len(sec)+1], cur[:len(sec)+1]
		clear(prev)
		for i := range n {
			best := 0
			cur[0] = 0
			for j := range sec {
				if text[i] == sec[j] {
					cur[j+1] = prev[j] + 1
					best = max(best, cur[j+1])
				} else {
					cur[j+1] = 0
				}
			}
			run[i] = best
			prev, cur = cur, prev
		}
		for i, l := range run {
			if l >= need {
				diff[i-l+1]++
				diff[i+1]--
			}
		}
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < n; i++ {
		if i >= limit {
			return b.String(), true
		}
		depth += diff[i]
		if depth > 0 {
			// A whole run, even one that crosses the limit.
			b.WriteString("[redacted]")
			for i+1 < n && depth+diff[i+1] > 0 {
				i++
				depth += diff[i]
			}
			continue
		}
		b.WriteByte(text[i])
	}
	return b.String(), false
}

// redact cuts the secrets out of s.
func (r *redactor) redact(s string) string {
	out, _ := r.quote([]byte(s), len(s))
	return out
}
