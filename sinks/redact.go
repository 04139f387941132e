package sinks

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
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

// A redactor cuts configured secrets out of text a server sent back, in
// any letter case and in the forms a server may echo them: URL-escaped,
// JSON-escaped, base64.
type redactor struct {
	secrets [][]byte // lower-cased
	longest int
}

// placeholderMark stands for every placeholder in the URL given to
// newRedactor: a value made of a batch's values is no secret.
const placeholderMark = "zq9placeholder9qz"

// markValues render every placeholder as placeholderMark.
var markValues = func() *Values {
	v := &Values{}
	for i := range v.v {
		v.v[i] = placeholderMark
	}
	return v
}()

// authSchemes start Authorization values; they are no secret.
var authSchemes = map[string]bool{"bearer": true, "basic": true, "token": true, "digest": true, "negotiate": true}

// newRedactor collects what a server might echo that must not reach the
// logs: every header value but public ones, and each word in it (a bare
// token without its "Bearer "); the URL's user name and password, also as
// the basic auth header carries them; each query value of a parameter
// named for a secret (api_key, token, sig…), raw and decoded; and each
// path segment or other query value that looks generated (tokenLike: a
// webhook's /T0123/B0456/x9Fk… or ?code=…). The batch's values put in by
// placeholders, query parameter names, words a person chose (/ingest,
// database=logs, JSONEachRow) and query values holding spaces (SQL, not a
// token) are not secrets: a server that names a setting, a table or an
// endpoint must stay readable.
func newRedactor(h http.Header, u *url.URL) *redactor {
	r := &redactor{}
	for name, vs := range h {
		if publicHeaders[http.CanonicalHeaderKey(name)] {
			continue
		}
		for _, v := range vs {
			if t, err := ParseTemplate(v, false); err == nil && !t.Static() {
				v = string(t.Render(nil, markValues, func(dst []byte, s string) []byte { return append(dst, s...) }))
			}
			// "Bearer" is no secret, what follows it is.
			if scheme, rest, ok := strings.Cut(v, " "); ok && authSchemes[asciiLower(scheme)] {
				r.add(strings.TrimSpace(rest))
			} else {
				r.add(v)
			}
			for _, w := range strings.FieldsFunc(v, func(c rune) bool {
				return c == ' ' || c == '\t' || c == ',' || c == ';' || c == '='
			}) {
				if !authSchemes[strings.ToLower(w)] {
					r.add(w)
				}
			}
		}
	}
	if u.User != nil {
		name := u.User.Username()
		r.add(name)
		if pass, ok := u.User.Password(); ok {
			r.add(pass)
			r.add(base64.StdEncoding.EncodeToString([]byte(name + ":" + pass)))
		}
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if v, err := url.PathUnescape(seg); err == nil && tokenLike(v) {
			r.add(seg)
			r.add(v)
		} else if err != nil && tokenLike(seg) {
			r.add(seg)
		}
	}
	r.add(u.Opaque)
	for _, kv := range strings.Split(u.RawQuery, "&") {
		name, v, _ := strings.Cut(kv, "=")
		d, err := url.QueryUnescape(v)
		if err != nil {
			d = v
		}
		named := secretName(name)
		if !named && (strings.ContainsAny(d, " \t\n") || !tokenLike(d)) {
			continue
		}
		r.add(v)
		r.add(d)
	}
	return r
}

// secretWords name query parameters whose values are secrets, whatever
// they look like.
var secretWords = []string{"key", "token", "secret", "pass", "pwd", "auth", "sig", "credential", "session", "code"}

// secretName reports whether a query parameter's name says its value is
// a secret (api_key, access_token, X-Amz-Signature, password…). A value
// made of placeholders is still none (see add).
func secretName(name string) bool {
	name = asciiLower(name)
	if d, err := url.QueryUnescape(name); err == nil {
		name = d
	}
	for _, w := range secretWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// tokenLike reports whether s looks generated rather than chosen by a
// person: 8 bytes or more mixing letters with digits or with +/=, or 16
// or more mixing both letter cases. "ingest", "v2", "JSONEachRow" and
// "insert_deduplication_token" are not; "T0123ABCD" and
// "x9FkQ2mPzL0aB7cD1eF3gH4i" are.
func tokenLike(s string) bool {
	if strings.Contains(s, placeholderMark) {
		for _, lit := range strings.Split(s, placeholderMark) {
			if tokenLike(lit) {
				return true
			}
		}
		return false
	}
	var letter, digit, sym, upper, lower bool
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z':
			letter, lower = true, true
		case 'A' <= c && c <= 'Z':
			letter, upper = true, true
		case '0' <= c && c <= '9':
			digit = true
		case c == '+' || c == '/' || c == '=':
			sym = true
		}
	}
	return len(s) >= 8 && letter && (digit || sym) || len(s) >= 16 && upper && lower
}

// add adds s in the forms a server may echo it. Of a value with
// placeholders, the text between them is secret, not the batch's values.
func (r *redactor) add(s string) {
	if strings.Contains(s, placeholderMark) {
		for _, lit := range strings.Split(s, placeholderMark) {
			r.add(lit)
		}
		return
	}
	if len(s) < minSecret {
		return
	}
	r.addForm(s)
	r.addForm(url.QueryEscape(s))
	r.addForm(url.PathEscape(s))
	r.addForm(escapeAll(s))
	if j, err := json.Marshal(s); err == nil {
		js := string(j[1 : len(j)-1])
		r.addForm(js)
		r.addForm(strings.ReplaceAll(js, "/", `\/`)) // as PHP and others escape it
	}
	// A secret inside base64 text starts at any of three offsets of a
	// 3-byte group: what of each encoding depends on the secret alone.
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		for k := range 3 {
			b := enc.EncodeToString(append(make([]byte, k), s...))
			from, to := (8*k+5)/6, 8*(k+len(s))/6
			r.addForm(b[from:to])
		}
	}
}

// escapeAll percent-encodes every byte that is not a letter or digit.
func escapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func (r *redactor) addForm(s string) {
	if len(s) < minSecret {
		return
	}
	low := []byte(asciiLower(s))
	for _, have := range r.secrets {
		if bytes.Equal(have, low) {
			return
		}
	}
	r.secrets = append(r.secrets, low)
	r.longest = max(r.longest, len(low))
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
			c := lower(text[i])
			for j := range sec {
				if c == sec[j] {
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

// lower folds an ASCII letter to lower case, as the secrets are.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// asciiLower folds ASCII letters to lower case, and only them: a byte of
// text is compared with a byte of a secret.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lower(c)
	}
	return string(b)
}

// redact cuts the secrets out of s.
func (r *redactor) redact(s string) string {
	out, _ := r.quote([]byte(s), len(s))
	return out
}
