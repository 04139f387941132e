package sinks

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
)

// A Placeholder is a name a template may hold in braces, and what it
// stands for.
type Placeholder struct {
	Name    string
	Meaning string // in Markdown (code in backquotes)
}

// PlaceholderTable is the one list of placeholders, the same for per-batch
// file names, S3 keys, http URLs and header values; exec gets the same
// values in its environment. Templates are parsed by it, --help renders it
// (PlaceholderHelp), and docs/flags.md holds it as a table, which
// TestDocsPlaceholders checks. Values holds a batch's in this order.
var PlaceholderTable = [...]Placeholder{
	{"seq", "the batch's number (`1`, `2`, `3`…), from 1 in every run"},
	{"time", "when the batch is written, UTC (`20060102T150405Z`)"},
	{"date", "the day it is written, UTC (`2006-01-02`)"},
	{"topic", "the topic of its Kafka records (`none` without Kafka, `mixed` if they differ)"},
	{"partition", "the partition of its Kafka records (`none` without Kafka, `mixed` if they differ)"},
	{"first_offset", "its first record's offset when all its records come from one partition (`none` otherwise)"},
	{"last_offset", "its last record's offset when all its records come from one partition (`none` otherwise)"},
	{"batch_id", "`TOPIC-PARTITION-FIRST-LAST` when all its records come from one partition (`none` otherwise)"},
	{"key", "its key with `--partition-by` (the partition, `TOPIC-PARTITION`, with `--exactly-once`)"},
	{"run", "the run's start, UTC to the millisecond, and 24 random bits (`20260102T150405.123Z-9f3a1c`): the same for every batch of a run"},
	{"hour", "the hour it is written, UTC (`15`)"},
}

// Placeholders are the names of PlaceholderTable, in its order.
var Placeholders = func() []string {
	names := make([]string, len(PlaceholderTable))
	for i, p := range PlaceholderTable {
		names[i] = p.Name
	}
	return names
}()

// PlaceholderList names the placeholders in braces: "{seq}, {time}, …".
var PlaceholderList = "{" + strings.Join(Placeholders, "}, {") + "}"

// PlaceholderHelp describes the placeholders, for --help: plain text,
// wrapped.
var PlaceholderHelp = func() string {
	var b strings.Builder
	line := ""
	for i, p := range PlaceholderTable {
		text := "{" + p.Name + "} " + strings.ReplaceAll(p.Meaning, "`", "")
		if i < len(PlaceholderTable)-1 {
			text += ";"
		}
		for _, w := range strings.Fields(text) {
			if line != "" && len(line)+1+len(w) > 76 {
				b.WriteString(line + "\n")
				line = ""
			}
			if line != "" {
				line += " "
			}
			line += w
		}
	}
	b.WriteString(line)
	return b.String()
}()

// PlaceholderMarkdown is PlaceholderTable as the table in docs/flags.md.
func PlaceholderMarkdown() string {
	var b strings.Builder
	b.WriteString("| placeholder | value |\n| --- | --- |\n")
	for _, p := range PlaceholderTable {
		fmt.Fprintf(&b, "| `{%s}` | %s |\n", p.Name, p.Meaning)
	}
	return b.String()
}

// A Template is text with placeholders, parsed once.
type Template struct {
	parts []tmplPart
}

type tmplPart struct {
	lit string
	ph  int // index in PlaceholderTable; -1: lit alone
}

// ParseTemplate parses s. With strict, an unknown {name} is an error (a
// typo, most likely); without, it stays as it is, for header values that
// may hold braces of their own.
func ParseTemplate(s string, strict bool) (*Template, error) {
	t := &Template{}
	lit := strings.Builder{}
	rest := s
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			lit.WriteString(rest)
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			if strict {
				return nil, fmt.Errorf("unclosed {")
			}
			lit.WriteString(rest)
			break
		}
		name := rest[i+1 : i+j]
		ph := -1
		for k, p := range Placeholders {
			if p == name {
				ph = k
			}
		}
		if ph < 0 {
			if strict {
				return nil, fmt.Errorf("unknown placeholder {%s} (known: {%s})", name, strings.Join(Placeholders, "}, {"))
			}
			lit.WriteString(rest[:i+1]) // a '{' of its own: look again after it
			rest = rest[i+1:]
			continue
		}
		lit.WriteString(rest[:i])
		t.parts = append(t.parts, tmplPart{lit: lit.String(), ph: ph})
		lit.Reset()
		rest = rest[i+j+1:]
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, tmplPart{lit: lit.String(), ph: -1})
	}
	return t, nil
}

// Has reports whether the template holds the placeholder name.
func (t *Template) Has(name string) bool {
	for _, p := range t.parts {
		if p.ph >= 0 && Placeholders[p.ph] == name {
			return true
		}
	}
	return false
}

// Static reports whether the template holds no placeholder.
func (t *Template) Static() bool {
	for _, p := range t.parts {
		if p.ph >= 0 {
			return false
		}
	}
	return true
}

// Render appends the template to dst with v's values, each passed through
// esc, which makes it safe where it goes.
func (t *Template) Render(dst []byte, v *Values, esc func(dst []byte, s string) []byte) []byte {
	for _, p := range t.parts {
		dst = append(dst, p.lit...)
		if p.ph >= 0 {
			dst = esc(dst, v.get(p.ph))
		}
	}
	return dst
}

// Values are a batch's placeholder values, in the order of
// PlaceholderTable.
type Values struct {
	v [len(PlaceholderTable)]string
	// Span is the batch's partition and offsets; ok is false if its
	// records are not all of one partition.
	Span   batcher.Span
	SpanOK bool
	Keyed  bool
}

func (v *Values) get(i int) string { return v.v[i] }

// Get returns the value of a placeholder by name.
func (v *Values) Get(name string) string {
	for k, p := range Placeholders {
		if p == name {
			return v.v[k]
		}
	}
	return ""
}

// SetSeq replaces {seq}: the parts of a split batch get suffixes.
func (v *Values) SetSeq(s string) { v.v[0] = s }

// BatchValues returns b's placeholder values, with now for {time} and
// {date}.
func BatchValues(b *batcher.Batch, now time.Time) *Values {
	v := &Values{}
	now = now.UTC()
	topic, partition := "none", "none"
	if m := b.Meta(0); m != nil {
		topic, partition = m.Topic, strconv.Itoa(int(m.Partition))
		for i := 1; i < b.Len(); i++ {
			if n := b.Meta(i); n == nil || n.Topic != m.Topic {
				topic, partition = "mixed", "mixed"
				break
			} else if n.Partition != m.Partition {
				partition = "mixed"
			}
		}
	}
	first, last, id := "none", "none", "none"
	if s, ok := b.Span(); ok {
		v.Span, v.SpanOK = s, true
		first, last, id = strconv.FormatInt(s.First, 10), strconv.FormatInt(s.Last, 10), s.ID()
	}
	v.Keyed = b.Keyed
	v.v = [11]string{strconv.FormatInt(b.Seq, 10), now.Format("20060102T150405Z"), now.Format("2006-01-02"),
		topic, partition, first, last, id, b.Key, RunID(), now.Format("15")}
	return v
}

// sampleValues stand for any batch when a template is checked.
var sampleValues = &Values{v: [11]string{"1", "20240501T100000Z", "2024-05-01", "topic", "0", "0", "0", "topic-0-0-0", "key", "20240501T100000.000Z-000000", "10"}}

// pathEscape makes a value fit for one element of a file path, one to one,
// so that two keys never share a file: bytes other than letters, digits,
// '.', '_' and '-' become %XX ('/' is %2F, so no value makes a directory
// or climbs out of one), "." and ".." become %2E and %2E%2E, and the empty
// value is "%", which no other value renders to.
func pathEscape(dst []byte, v string) []byte {
	switch v {
	case "":
		return append(dst, '%')
	case ".":
		return append(dst, "%2E"...)
	case "..":
		return append(dst, "%2E%2E"...)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-' {
			dst = append(dst, c)
		} else {
			dst = fmt.Appendf(dst, "%%%02X", c)
		}
	}
	return dst
}

// pathSafe is pathEscape to a string.
func pathSafe(v string) string { return string(pathEscape(nil, v)) }

// urlEscape percent-encodes every byte but RFC 3986's unreserved ones, so
// a value stays one path segment or one query value.
func urlEscape(dst []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-' || c == '~' {
			dst = append(dst, c)
		} else {
			dst = fmt.Appendf(dst, "%%%02X", c)
		}
	}
	return dst
}

// segmentEscape makes a value one path segment of a URL that stays one
// even where a proxy decodes %XX once before it resolves dot segments (as
// nginx does, %2E and %2F included): the value's file name (pathEscape:
// never empty, never "." or "..", no '/') is percent-encoded, '%' too. A
// server that decodes the path once sees the file name; decoding that once
// more gives the value back, "%" alone standing for the empty value.
func segmentEscape(dst []byte, v string) []byte {
	var buf [64]byte
	return urlEscape(dst, string(pathEscape(buf[:0], v)))
}

// renderURL renders a URL template: values in the path with
// segmentEscape, values in the query (past the first '?') with urlEscape.
func (t *Template) renderURL(dst []byte, v *Values) []byte {
	inQuery := false
	for _, p := range t.parts {
		dst = append(dst, p.lit...)
		inQuery = inQuery || strings.IndexByte(p.lit, '?') >= 0
		switch {
		case p.ph < 0:
		case inQuery:
			dst = urlEscape(dst, v.get(p.ph))
		default:
			dst = segmentEscape(dst, v.get(p.ph))
		}
	}
	return dst
}

// headerEscape percent-encodes control bytes, which a header value cannot
// hold, and '%', so that the encoding can be undone.
func headerEscape(dst []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c == 0x7f || c == '%' {
			dst = fmt.Appendf(dst, "%%%02X", c)
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// envEscape makes a value fit for the environment: NUL, which it cannot
// hold, becomes %00, and '%' becomes %25.
func envEscape(v string) string {
	if !strings.ContainsAny(v, "\x00%") {
		return v
	}
	return strings.NewReplacer("%", "%25", "\x00", "%00").Replace(v)
}
