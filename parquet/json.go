package parquet

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// A small strict JSON parser (RFC 8259) into a flat list of nodes reused
// from record to record: decoding each record into maps and interfaces
// with encoding/json took two thirds of the time of a batch.

type jkind uint8

const (
	jNull jkind = iota
	jFalse
	jTrue
	jNumber
	jString
	jArray
	jObject
)

// A jnode is one JSON value. A string's or member key's text is unescaped;
// a number's is as written.
type jnode struct {
	kind  jkind
	text  []byte
	key   []byte // of an object member
	child int32  // first member or item; -1 if none
	next  int32  // next sibling; -1 if none
}

type jparser struct {
	nodes []jnode
	// text holds unescaped strings. Nodes point into it until reset, so
	// values shredded from several records may share it.
	text  []byte
	data  []byte
	i     int
	depth int
}

const maxDepth = 1000

// parse parses data as one JSON value and returns the index of its node.
func (p *jparser) parse(data []byte) (int32, error) {
	if !utf8.Valid(data) {
		return -1, errors.New("invalid UTF-8")
	}
	p.nodes, p.data, p.i, p.depth = p.nodes[:0], data, 0, 0
	p.space()
	root, err := p.value()
	if err != nil {
		return -1, err
	}
	p.space()
	if p.i < len(p.data) {
		return -1, p.errorf("text after the value")
	}
	return root, nil
}

func (p *jparser) errorf(format string, a ...any) error {
	return fmt.Errorf("%s (at byte %d of the record)", fmt.Sprintf(format, a...), p.i)
}

func (p *jparser) space() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jparser) add(n jnode) int32 {
	p.nodes = append(p.nodes, n)
	return int32(len(p.nodes) - 1)
}

func (p *jparser) value() (int32, error) {
	if p.i >= len(p.data) {
		return -1, p.errorf("unexpected end")
	}
	switch c := p.data[p.i]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.str()
		if err != nil {
			return -1, err
		}
		return p.add(jnode{kind: jString, text: s, child: -1, next: -1}), nil
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	for _, lit := range [...]struct {
		s string
		k jkind
	}{{"null", jNull}, {"true", jTrue}, {"false", jFalse}} {
		if len(p.data)-p.i >= len(lit.s) && string(p.data[p.i:p.i+len(lit.s)]) == lit.s {
			p.i += len(lit.s)
			return p.add(jnode{kind: lit.k, child: -1, next: -1}), nil
		}
	}
	return -1, p.errorf("invalid character %q looking for a value", p.data[p.i])
}

func (p *jparser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.errorf("nested deeper than %d", maxDepth)
	}
	return nil
}

func (p *jparser) object() (int32, error) {
	if err := p.enter(); err != nil {
		return -1, err
	}
	me := p.add(jnode{kind: jObject, child: -1, next: -1})
	p.i++ // {
	p.space()
	if p.i < len(p.data) && p.data[p.i] == '}' {
		p.i++
		p.depth--
		return me, nil
	}
	last := int32(-1)
	for {
		p.space()
		if p.i >= len(p.data) || p.data[p.i] != '"' {
			return -1, p.errorf("expected a member name")
		}
		key, err := p.str()
		if err != nil {
			return -1, err
		}
		p.space()
		if p.i >= len(p.data) || p.data[p.i] != ':' {
			return -1, p.errorf("expected ':' after a member name")
		}
		p.i++
		p.space()
		v, err := p.value()
		if err != nil {
			return -1, err
		}
		p.nodes[v].key = key
		if last < 0 {
			p.nodes[me].child = v
		} else {
			p.nodes[last].next = v
		}
		last = v
		p.space()
		if p.i >= len(p.data) {
			return -1, p.errorf("unexpected end in an object")
		}
		switch p.data[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			p.depth--
			return me, nil
		default:
			return -1, p.errorf("expected ',' or '}' in an object")
		}
	}
}

func (p *jparser) array() (int32, error) {
	if err := p.enter(); err != nil {
		return -1, err
	}
	me := p.add(jnode{kind: jArray, child: -1, next: -1})
	p.i++ // [
	p.space()
	if p.i < len(p.data) && p.data[p.i] == ']' {
		p.i++
		p.depth--
		return me, nil
	}
	last := int32(-1)
	for {
		p.space()
		v, err := p.value()
		if err != nil {
			return -1, err
		}
		if last < 0 {
			p.nodes[me].child = v
		} else {
			p.nodes[last].next = v
		}
		last = v
		p.space()
		if p.i >= len(p.data) {
			return -1, p.errorf("unexpected end in an array")
		}
		switch p.data[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			p.depth--
			return me, nil
		default:
			return -1, p.errorf("expected ',' or ']' in an array")
		}
	}
}

func (p *jparser) number() (int32, error) {
	start := p.i
	d := p.data
	if p.i < len(d) && d[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		s := p.i
		for p.i < len(d) && d[p.i] >= '0' && d[p.i] <= '9' {
			p.i++
		}
		return p.i - s
	}
	switch {
	case p.i < len(d) && d[p.i] == '0':
		p.i++
	case digits() == 0:
		return -1, p.errorf("invalid number")
	}
	if p.i < len(d) && d[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return -1, p.errorf("invalid number")
		}
	}
	if p.i < len(d) && (d[p.i] == 'e' || d[p.i] == 'E') {
		p.i++
		if p.i < len(d) && (d[p.i] == '+' || d[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return -1, p.errorf("invalid number")
		}
	}
	return p.add(jnode{kind: jNumber, text: d[start:p.i], child: -1, next: -1}), nil
}

// str reads a string at p.i (its opening quote) and returns its text.
func (p *jparser) str() ([]byte, error) {
	p.i++
	start := p.i
	d := p.data
	for p.i < len(d) {
		c := d[p.i]
		switch {
		case c == '"':
			s := d[start:p.i]
			p.i++
			return s, nil
		case c == '\\':
			return p.escaped(start)
		case c < 0x20:
			return nil, p.errorf("control character %#02x in a string", c)
		}
		p.i++
	}
	return nil, p.errorf("unterminated string")
}

// escaped finishes a string that has escapes, from start, into p.text.
func (p *jparser) escaped(start int) ([]byte, error) {
	d := p.data
	out := len(p.text)
	p.text = append(p.text, d[start:p.i]...)
	for p.i < len(d) {
		c := d[p.i]
		switch {
		case c == '"':
			p.i++
			return p.text[out:len(p.text):len(p.text)], nil
		case c < 0x20:
			return nil, p.errorf("control character %#02x in a string", c)
		case c != '\\':
			p.text = append(p.text, c)
			p.i++
			continue
		}
		if p.i+1 >= len(d) {
			break
		}
		e := d[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			p.text = append(p.text, e)
		case 'b':
			p.text = append(p.text, '\b')
		case 'f':
			p.text = append(p.text, '\f')
		case 'n':
			p.text = append(p.text, '\n')
		case 'r':
			p.text = append(p.text, '\r')
		case 't':
			p.text = append(p.text, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, p.errorf("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2, ok := rune(-1), false
				if p.i+1 < len(d) && d[p.i] == '\\' && d[p.i+1] == 'u' {
					p.i += 2
					r2, ok = p.hex4()
				}
				r = utf16.DecodeRune(r, r2)
				if !ok || r == utf8.RuneError {
					// encoding/json would put U+FFFD: a silent change.
					return nil, p.errorf("a lone UTF-16 surrogate in a \\u escape")
				}
			}
			p.text = utf8.AppendRune(p.text, r)
		default:
			return nil, p.errorf("invalid escape \\%c", e)
		}
	}
	return nil, p.errorf("unterminated string")
}

func (p *jparser) hex4() (rune, bool) {
	if p.i+4 > len(p.data) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.data[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(n), true
}

// member returns the last member of object o named key (encoding/json too
// takes the last of duplicates), or -1.
func (p *jparser) member(o int32, key string) int32 {
	found := int32(-1)
	for c := p.nodes[o].child; c >= 0; c = p.nodes[c].next {
		if string(p.nodes[c].key) == key {
			found = c
		}
	}
	return found
}
