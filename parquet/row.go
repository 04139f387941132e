package parquet

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	pq "github.com/parquet-go/parquet-go"
)

// shredder turns records into Parquet rows: a value for each leaf column,
// with its repetition and definition levels. Its buffers are reused from
// record to record.
type shredder struct {
	s    *Schema
	cols [][]pq.Value // values of the record being shredded, by leaf column
	p    jparser
	dec  *json.Decoder // for Infer
	rd   bytes.Reader
}

func newShredder(s *Schema) *shredder {
	return &shredder{s: s, cols: make([][]pq.Value, s.leaves)}
}

// decode parses one record as JSON: numbers keep their text, so none is
// rounded on the way to an integer or a decimal.
func (sh *shredder) decode(r []byte) (any, error) {
	r = bytes.TrimPrefix(r, []byte("\xEF\xBB\xBF"))
	if !utf8.Valid(r) {
		// encoding/json would replace the bad bytes: a silent change.
		return nil, errors.New("not valid JSON: invalid UTF-8")
	}
	sh.rd.Reset(r)
	if sh.dec == nil {
		sh.dec = json.NewDecoder(&sh.rd)
	} else {
		*sh.dec = *json.NewDecoder(&sh.rd)
	}
	sh.dec.UseNumber()
	var v any
	if err := sh.dec.Decode(&v); err != nil {
		if err == io.EOF {
			return nil, errors.New("not valid JSON: empty")
		}
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if _, err := sh.dec.Token(); err != io.EOF {
		return nil, errors.New("not valid JSON: text after the value")
	}
	return v, nil
}

// row shreds record r and appends its values to row. On error, row is
// returned as it was. The values may point into r, and into the parser's
// text until reset.
func (sh *shredder) row(row pq.Row, r []byte) (pq.Row, error) {
	r = bytes.TrimPrefix(r, []byte("\xEF\xBB\xBF"))
	root, err := sh.p.parse(r)
	if err != nil {
		return row, fmt.Errorf("not valid JSON: %w", err)
	}
	if k := sh.p.nodes[root].kind; k != jObject {
		return row, fmt.Errorf("not a JSON object but %s", sh.kindOf(root))
	}
	for i := range sh.cols {
		sh.cols[i] = sh.cols[i][:0]
	}
	for _, c := range sh.s.Columns {
		if err := sh.shred(c, sh.lookup(root, c.keys), 0, 0); err != nil {
			return row, err
		}
	}
	for _, vs := range sh.cols {
		row = append(row, vs...)
	}
	return row, nil
}

// reset lets the parser reuse its text: once the rows shredded so far
// are written.
func (sh *shredder) reset() { sh.p.text = sh.p.text[:0] }

// lookup follows keys from node n; -1 if absent.
func (sh *shredder) lookup(n int32, keys []string) int32 {
	for _, k := range keys {
		if sh.p.nodes[n].kind != jObject {
			return -1
		}
		if n = sh.p.member(n, k); n < 0 {
			return -1
		}
	}
	return n
}

// shred appends the values of column c for node n (-1 when absent; JSON
// null is null too) at repetition level rep, under a parent defined to
// level def.
func (sh *shredder) shred(c *Column, n int32, rep, def int) error {
	if n < 0 || sh.p.nodes[n].kind == jNull {
		if c.Required {
			if n < 0 {
				return fmt.Errorf("required field %s is missing", c.describe())
			}
			return fmt.Errorf("required field %s is null", c.describe())
		}
		sh.nulls(c, rep, def)
		return nil
	}
	switch c.kind {
	case kStruct:
		if sh.p.nodes[n].kind != jObject {
			return sh.mismatch(c, n)
		}
		for _, f := range c.Fields {
			if err := sh.shred(f, sh.lookup(n, f.keys), rep, c.def); err != nil {
				return err
			}
		}
		return nil
	case kList:
		if sh.p.nodes[n].kind != jArray {
			return sh.mismatch(c, n)
		}
		item := sh.p.nodes[n].child
		if item < 0 {
			sh.nulls(c.Items, rep, c.def)
			return nil
		}
		for r := rep; item >= 0; item, r = sh.p.nodes[item].next, c.Items.rep {
			if err := sh.shred(c.Items, item, r, c.def+1); err != nil {
				return err
			}
		}
		return nil
	}
	pv, err := sh.value(c, n)
	if err != nil {
		return err
	}
	sh.cols[c.leaf] = append(sh.cols[c.leaf], pv.Level(rep, c.def, c.leaf))
	return nil
}

// nulls appends a null to every leaf column at or below c.
func (sh *shredder) nulls(c *Column, rep, def int) {
	switch c.kind {
	case kStruct:
		for _, f := range c.Fields {
			sh.nulls(f, rep, def)
		}
	case kList:
		sh.nulls(c.Items, rep, def)
	default:
		sh.cols[c.leaf] = append(sh.cols[c.leaf], pq.NullValue().Level(rep, def, c.leaf))
	}
}

func (c *Column) describe() string {
	if c.item {
		return "item"
	}
	return strings.Join(c.keys, ".")
}

func (sh *shredder) mismatch(c *Column, n int32) error {
	what := c.Type
	if c.kind == kStruct {
		what = "object"
	} else if c.kind == kList {
		what = "array"
	}
	return fmt.Errorf("field %s is %s, not %s", c.describe(), sh.kindOf(n), article(what))
}

// kindOf describes node n for errors.
func (sh *shredder) kindOf(n int32) string {
	v := sh.p.nodes[n]
	switch v.kind {
	case jNull:
		return "null"
	case jTrue, jFalse:
		return "a boolean"
	case jNumber:
		return "the number " + string(v.text)
	case jString:
		t := string(v.text)
		if len(t) > 40 {
			t = t[:40] + "…"
		}
		return "the string " + strconv.Quote(t)
	case jArray:
		return "an array"
	}
	return "an object"
}

func article(s string) string {
	if strings.IndexByte("aeiou", s[0]) >= 0 {
		return "an " + s
	}
	return "a " + s
}

// value converts a JSON value to the leaf column's type, exactly or not at
// all.
func (sh *shredder) value(c *Column, n int32) (pq.Value, error) {
	v := &sh.p.nodes[n]
	num := v.kind == jNumber
	str := v.kind == jString
	switch c.kind {
	case kInt32, kInt64, kFloat, kDouble:
		if !num {
			return pq.Value{}, sh.mismatch(c, n)
		}
		return number(c, v.text)
	case kBoolean:
		if v.kind != jTrue && v.kind != jFalse {
			return pq.Value{}, sh.mismatch(c, n)
		}
		return pq.BooleanValue(v.kind == jTrue), nil
	case kString:
		if !str {
			return pq.Value{}, sh.mismatch(c, n)
		}
		return pq.ByteArrayValue(v.text), nil
	case kBytes:
		if !str {
			return pq.Value{}, sh.mismatch(c, n)
		}
		b := make([]byte, base64.StdEncoding.DecodedLen(len(v.text)))
		k, err := base64.StdEncoding.Strict().Decode(b, v.text)
		if err != nil {
			return pq.Value{}, fmt.Errorf("field %s: not base64: %w", c.describe(), err)
		}
		return pq.ByteArrayValue(b[:k]), nil
	case kDate:
		if !str {
			return pq.Value{}, sh.mismatch(c, n)
		}
		t, err := time.Parse(time.DateOnly, string(v.text))
		if err != nil {
			return pq.Value{}, fmt.Errorf("field %s: %q is not a date (YYYY-MM-DD)", c.describe(), v.text)
		}
		return pq.Int32Value(int32(t.Unix() / 86400)), nil
	case kTimestamp:
		t, err := sh.timestamp(c, n)
		if err != nil {
			return pq.Value{}, err
		}
		return pq.Int64Value(t), nil
	case kDecimal:
		if !num && !str {
			return pq.Value{}, sh.mismatch(c, n)
		}
		d, err := unscaled(string(v.text), c.Precision, c.Scale)
		if err != nil {
			return pq.Value{}, fmt.Errorf("field %s: %q: %w", c.describe(), v.text, err)
		}
		if c.Precision <= 9 {
			return pq.Int32Value(int32(d)), nil
		}
		return pq.Int64Value(d), nil
	}
	return pq.Value{}, fmt.Errorf("field %s: type %s has no values", c.describe(), c.Type)
}

// number is the value of a JSON number in an integer or floating point
// column, refused where it does not fit.
func number(c *Column, text []byte) (pq.Value, error) {
	switch c.kind {
	case kInt32, kInt64:
		bits := 64
		if c.kind == kInt32 {
			bits = 32
		}
		i, err := strconv.ParseInt(string(text), 10, bits)
		if err != nil {
			return pq.Value{}, fmt.Errorf("field %s: %s is not an %s", c.describe(), text, c.Type)
		}
		if bits == 32 {
			return pq.Int32Value(int32(i)), nil
		}
		return pq.Int64Value(i), nil
	default:
		bits := 64
		if c.kind == kFloat {
			bits = 32
		}
		f, err := strconv.ParseFloat(string(text), bits)
		if err != nil {
			return pq.Value{}, fmt.Errorf("field %s: %s is out of a %s's range", c.describe(), text, c.Type)
		}
		if bits == 32 {
			return pq.FloatValue(float32(f)), nil
		}
		return pq.DoubleValue(f), nil
	}
}

var (
	unitNanos  = map[string]int64{"ms": 1e6, "us": 1e3, "ns": 1}
	epochScale = map[string]int{"s": 9, "ms": 6, "us": 3, "ns": 0}
	epochName  = map[string]string{"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
)

// timestamp converts RFC 3339 text (any offset) or a number of the
// column's epoch unit since 1970 (an exact decimal) to the column's unit since the epoch, UTC. A value finer than
// the unit is refused rather than cut.
func (sh *shredder) timestamp(c *Column, n int32) (int64, error) {
	v := &sh.p.nodes[n]
	per := unitNanos[c.Unit]
	var sec, nsec int64
	switch v.kind {
	case jString:
		t, err := time.Parse(time.RFC3339Nano, string(v.text))
		if err != nil {
			return 0, fmt.Errorf("field %s: %q is not an RFC 3339 time", c.describe(), v.text)
		}
		sec, nsec = t.Unix(), int64(t.Nanosecond())
	case jNumber:
		n, err := unscaled(string(v.text), 19, epochScale[c.Epoch])
		if err != nil {
			return 0, fmt.Errorf("field %s: %s is not a time in epoch %s: %w", c.describe(), v.text, epochName[c.Epoch], err)
		}
		sec, nsec = n/1e9, n%1e9
		if nsec < 0 {
			sec, nsec = sec-1, nsec+1e9
		}
	default:
		return 0, sh.mismatch(c, n)
	}
	if nsec%per != 0 {
		return 0, fmt.Errorf("field %s: %s is finer than the column's unit (%s)", c.describe(), v.text, c.Unit)
	}
	perSec := 1e9 / per
	if sec > math.MaxInt64/perSec || sec < math.MinInt64/perSec+1 {
		return 0, fmt.Errorf("field %s: %s is out of range", c.describe(), v.text)
	}
	return sec*perSec + nsec/per, nil
}

var errDecimal = errors.New("not a decimal number")

// unscaled returns the decimal number s times 10^scale, refusing one with
// more digits after the point than scale (other than zeros), or more than
// precision digits in all. An exponent is allowed.
func unscaled(s string, precision, scale int) (int64, error) {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > 100 || e < -100 {
			return 0, errDecimal
		}
		mant, exp = s[:i], e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	if intPart == "" && frac == "" {
		return 0, errDecimal
	}
	digits := intPart + frac
	for _, d := range digits {
		if d < '0' || d > '9' {
			return 0, errDecimal
		}
	}
	// digits × 10^(scale - len(frac) + exp)
	shift := scale - len(frac) + exp
	for shift < 0 {
		if digits == "" || digits[len(digits)-1] != '0' {
			return 0, fmt.Errorf("more than %d digits after the point", scale)
		}
		digits = digits[:len(digits)-1]
		shift++
	}
	digits = strings.TrimLeft(digits, "0")
	if len(digits)+shift > precision {
		return 0, fmt.Errorf("more than %d digits", precision)
	}
	var n int64
	for _, d := range digits + strings.Repeat("0", shift) {
		if n > (math.MaxInt64-9)/10 {
			return 0, errors.New("out of range")
		}
		n = n*10 + int64(d-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}
