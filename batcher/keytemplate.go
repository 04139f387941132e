package batcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// KeyTemplateHelp says what --partition-by renders, for --help.
const KeyTemplateHelp = `{json:PATH} a field of a JSON record, PATH dotted for nested objects
(a.b.c); a string gives its text, a number or boolean as written.
{field:N} column N (from 1) of the record split by --field-delimiter.
{kafka_key}, {topic}, {partition} of a Kafka record (an absent Kafka key
is empty). {date} and {hour} when the record is read (UTC, 2006-01-02 and
15). Anything else is literal text.
A record whose key cannot be rendered (not JSON, a missing field or
column, a JSON null, object or array) is not put in any batch: it goes to
--dead-letter on its own, or, without one, counts as undelivered and makes
the exit status 1, while the other records are delivered.`

// keyPart is a piece of a key template: literal text or one value.
type keyPart struct {
	lit   string
	kind  keyKind
	path  []string // keyJSON
	field int      // keyField, from 0
}

type keyKind uint8

const (
	keyLit keyKind = iota
	keyJSON
	keyField
	keyKafkaKey
	keyTopic
	keyPartition
	keyDate
	keyHour
)

// A KeyTemplate renders a record's batch key for Config.Key.
type KeyTemplate struct {
	parts  []keyPart
	delim  byte
	now    func() time.Time
	kafka  bool // needs Kafka records
	column bool // parts is one {field:N}: rendered without the loop
}

// ParseKeyTemplate parses a --partition-by template; fieldDelim splits
// {field:N} columns.
func ParseKeyTemplate(s string, fieldDelim byte) (*KeyTemplate, error) {
	t := &KeyTemplate{delim: fieldDelim, now: time.Now}
	rest := s
	for rest != "" {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			t.parts = append(t.parts, keyPart{lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, keyPart{lit: rest[:i]})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unclosed { in %q", s)
		}
		name := rest[i+1 : i+j]
		rest = rest[i+j+1:]
		var p keyPart
		switch {
		case strings.HasPrefix(name, "json:"):
			path := strings.TrimPrefix(name, "json:")
			if path == "" || slicesContainsEmpty(strings.Split(path, ".")) {
				return nil, fmt.Errorf("{%s}: give a dotted path, such as {json:user.id}", name)
			}
			p = keyPart{kind: keyJSON, path: strings.Split(path, ".")}
		case strings.HasPrefix(name, "field:"):
			n, err := strconv.Atoi(strings.TrimPrefix(name, "field:"))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("{%s}: columns count from 1", name)
			}
			p = keyPart{kind: keyField, field: n - 1}
		case name == "kafka_key":
			p.kind = keyKafkaKey
		case name == "topic":
			p.kind = keyTopic
		case name == "partition":
			p.kind = keyPartition
		case name == "date":
			p.kind = keyDate
		case name == "hour":
			p.kind = keyHour
		default:
			return nil, fmt.Errorf("unknown placeholder {%s} (known: {json:PATH}, {field:N}, {kafka_key}, {topic}, {partition}, {date}, {hour})", name)
		}
		if p.kind == keyKafkaKey || p.kind == keyTopic || p.kind == keyPartition {
			t.kafka = true
		}
		t.parts = append(t.parts, p)
	}
	if len(t.parts) == 0 {
		return nil, errors.New("empty template")
	}
	t.column = len(t.parts) == 1 && t.parts[0].kind == keyField
	return t, nil
}

func slicesContainsEmpty(ss []string) bool {
	for _, s := range ss {
		if s == "" {
			return true
		}
	}
	return false
}

// NeedsKafka reports whether the template reads Kafka metadata.
func (t *KeyTemplate) NeedsKafka() bool { return t.kafka }

// Key appends r's key to dst: it is a Config.Key.
func (t *KeyTemplate) Key(dst []byte, r *Record) ([]byte, error) {
	if t.column {
		// The most common template, at the cost of a search or two: a
		// short first column is found and copied without a call.
		data, delim := r.Data, t.delim
		if t.parts[0].field == 0 {
			for i := 0; i < len(data) && i < 8; i++ {
				if data[i] == delim {
					for _, c := range data[:i] {
						dst = append(dst, c)
					}
					return dst, nil
				}
			}
		}
		f, ok := field(data, delim, t.parts[0].field)
		if !ok {
			return dst, fmt.Errorf("{field:%d}: the record has fewer columns", t.parts[0].field+1)
		}
		return append(dst, f...), nil
	}
	var obj map[string]json.RawMessage // the record's top level, parsed once
	var now time.Time
	valid := false // r.Data is valid JSON
	for _, p := range t.parts {
		switch p.kind {
		case keyLit:
			dst = append(dst, p.lit...)
		case keyJSON:
			if !valid {
				if !json.Valid(r.Data) {
					return dst, errNotJSONObject
				}
				valid = true
			}
			if v, ok := jsonFind(r.Data, p.path); ok {
				dst = append(dst, v...)
				continue
			}
			if obj == nil {
				var err error
				if obj, err = jsonObject(r.Data); err != nil {
					return dst, err
				}
			}
			v, err := jsonPath(obj, p.path)
			if err != nil {
				return dst, err
			}
			dst = append(dst, v...)
		case keyField:
			f, ok := field(r.Data, t.delim, p.field)
			if !ok {
				return dst, fmt.Errorf("{field:%d}: the record has fewer columns", p.field+1)
			}
			dst = append(dst, f...)
		case keyKafkaKey, keyTopic, keyPartition:
			if r.Meta == nil {
				return dst, errors.New("{kafka_key}, {topic} and {partition} need Kafka records")
			}
			dst = p.appendMeta(dst, r.Meta)
		case keyDate, keyHour:
			if now.IsZero() {
				now = t.now().UTC()
			}
			if p.kind == keyDate {
				dst = now.AppendFormat(dst, "2006-01-02")
			} else {
				dst = now.AppendFormat(dst, "15")
			}
		}
	}
	return dst, nil
}

// appendMeta appends the Kafka key, topic or partition p stands for.
func (p *keyPart) appendMeta(dst []byte, m *Meta) []byte {
	switch p.kind {
	case keyKafkaKey:
		return append(dst, m.Key...)
	case keyTopic:
		return append(dst, m.Topic...)
	}
	return strconv.AppendInt(dst, int64(m.Partition), 10)
}

// jsonObject parses a record that must be a JSON object; apart from Key,
// so that Key allocates nothing for templates without {json:…}.
func jsonObject(data []byte) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return nil, errNotJSONObject
	}
	return obj, nil
}

var errNotJSONObject = errors.New("{json:…}: the record is not a JSON object")

// jsonFind finds a dotted path in data, valid JSON, without parsing it
// into maps (which took 3 µs and 23 allocations a record): it returns a
// string's contents, a number or a boolean as written. It reports false
// for what it leaves to jsonObject and jsonPath, which say why or decode
// it: a missing field, null, an object or array, a string with an escape
// or not UTF-8, a key with an escape or beyond ASCII.
func jsonFind(data []byte, path []string) ([]byte, bool) {
	for _, name := range path {
		i := skipSpace(data, 0)
		if i == len(data) || data[i] != '{' {
			return nil, false
		}
		var found []byte
		for i = skipSpace(data, i+1); data[i] != '}'; {
			// A key, ':', a value, then ',' or '}': data is valid.
			end := i + 1
			for ; data[end] != '"'; end++ {
				if data[end] == '\\' || data[end] >= utf8.RuneSelf {
					return nil, false
				}
			}
			key := data[i+1 : end]
			i = skipSpace(data, skipSpace(data, end+1)+1)
			vend := skipValue(data, i)
			if string(key) == name {
				found = data[i:vend] // the last of duplicate keys counts, as in json.Unmarshal
			}
			if i = skipSpace(data, vend); data[i] == ',' {
				i = skipSpace(data, i+1)
			}
		}
		if found == nil {
			return nil, false
		}
		data = found
	}
	switch c := data[0]; {
	case c == '"':
		s := data[1 : len(data)-1]
		if bytes.IndexByte(s, '\\') >= 0 || !utf8.Valid(s) {
			return nil, false
		}
		return s, true
	case c == 't' || c == 'f' || c == '-' || '0' <= c && c <= '9':
		return data, true
	}
	return nil, false
}

// skipSpace returns the index of the first byte from i on that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the valid JSON value at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i
}

// skipString returns the index just past the valid JSON string at b[i].
func skipString(b []byte, i int) int {
	for i++; ; i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
}

// jsonPath finds a dotted path in a JSON object and returns the value as
// text: a string's contents, a number or boolean as written.
func jsonPath(obj map[string]json.RawMessage, path []string) ([]byte, error) {
	name := strings.Join(path, ".")
	var raw json.RawMessage
	for i, k := range path {
		v, ok := obj[k]
		if !ok {
			return nil, fmt.Errorf("{json:%s}: no field %q", name, strings.Join(path[:i+1], "."))
		}
		if i == len(path)-1 {
			raw = v
			break
		}
		obj = nil
		if err := json.Unmarshal(v, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("{json:%s}: %q is not an object", name, strings.Join(path[:i+1], "."))
		}
	}
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("{json:%s}: %w", name, err)
		}
		return []byte(s), nil
	case bytes.Equal(raw, []byte("null")):
		return nil, fmt.Errorf("{json:%s}: the field is null", name)
	case len(raw) > 0 && (raw[0] == '{' || raw[0] == '['):
		return nil, fmt.Errorf("{json:%s}: the field is an object or array, not a value", name)
	}
	return raw, nil
}

// field returns column n (from 0) of data split by delim.
func field(data []byte, delim byte, n int) ([]byte, bool) {
	for range n {
		i := indexShort(data, delim)
		if i < 0 {
			return nil, false
		}
		data = data[i+1:]
	}
	if i := indexShort(data, delim); i >= 0 {
		data = data[:i]
	}
	return data, true
}

// indexShort is bytes.IndexByte for columns, which are mostly short: a
// loop over the first bytes costs less than setting up the vector search.
func indexShort(b []byte, c byte) int {
	const short = 16
	for i := 0; i < len(b) && i < short; i++ {
		if b[i] == c {
			return i
		}
	}
	if len(b) <= short {
		return -1
	}
	if i := bytes.IndexByte(b[short:], c); i >= 0 {
		return short + i
	}
	return -1
}
