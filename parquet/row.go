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
	dec  *json.Decoder
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
// returned as it was.
func (sh *shredder) row(row pq.Row, r []byte) (pq.Row, error) {
	v, err := sh.decode(r)
	if err != nil {
		return row, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return row, fmt.Errorf("not a JSON object but %s", jsonKind(v))
	}
	for i := range sh.cols {
		sh.cols[i] = sh.cols[i][:0]
	}
	for _, c := range sh.s.Columns {
		fv, present := lookup(obj, c.keys)
		if err := sh.shred(c, fv, present, 0, 0); err != nil {
			return row, err
		}
	}
	for _, vs := range sh.cols {
		row = append(row, vs...)
	}
	return row, nil
}

// lookup follows keys into obj.
func lookup(obj map[string]any, keys []string) (any, bool) {
	var v any = obj
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// shred appends the values of column c for v (absent, or JSON null, is
// null) at repetition level rep, under a parent defined to level def.
func (sh *shredder) shred(c *Column, v any, present bool, rep, def int) error {
	if !present || v == nil {
		if c.Required {
			if !present {
				return fmt.Errorf("required field %s is missing", c.describe())
			}
			return fmt.Errorf("required field %s is null", c.describe())
		}
		sh.nulls(c, rep, def)
		return nil
	}
	switch c.kind {
	case kStruct:
		obj, ok := v.(map[string]any)
		if !ok {
			return c.mismatch(v)
		}
		for _, f := range c.Fields {
			fv, ok := lookup(obj, f.keys)
			if err := sh.shred(f, fv, ok, rep, c.def); err != nil {
				return err
			}
		}
		return nil
	case kList:
		items, ok := v.([]any)
		if !ok {
			return c.mismatch(v)
		}
		if len(items) == 0 {
			sh.nulls(c.Items, rep, c.def)
			return nil
		}
		for i, item := range items {
			r := rep
			if i > 0 {
				r = c.Items.rep
			}
			if err := sh.shred(c.Items, item, true, r, c.def+1); err != nil {
				return err
			}
		}
		return nil
	}
	pv, err := c.value(v)
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

func (c *Column) mismatch(v any) error {
	what := c.Type
	if c.kind == kStruct {
		what = "object"
	} else if c.kind == kList {
		what = "array"
	}
	return fmt.Errorf("field %s is %s, not %s", c.describe(), jsonKind(v), article(what))
}

func article(s string) string {
	if strings.IndexByte("aeiou", s[0]) >= 0 {
		return "an " + s
	}
	return "a " + s
}

func jsonKind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "the number " + string(v)
	case string:
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		return "the string " + strconv.Quote(v)
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// value converts a JSON value to the leaf column's type, exactly or not at
// all.
func (c *Column) value(v any) (pq.Value, error) {
	switch c.kind {
	case kInt32, kInt64:
		n, ok := v.(json.Number)
		if !ok {
			return pq.Value{}, c.mismatch(v)
		}
		bits := 64
		if c.kind == kInt32 {
			bits = 32
		}
		i, err := strconv.ParseInt(string(n), 10, bits)
		if err != nil {
			return pq.Value{}, fmt.Errorf("field %s: %s is not an %s", c.describe(), n, c.Type)
		}
		if bits == 32 {
			return pq.Int32Value(int32(i)), nil
		}
		return pq.Int64Value(i), nil
	case kFloat, kDouble:
		n, ok := v.(json.Number)
		if !ok {
			return pq.Value{}, c.mismatch(v)
		}
		bits := 64
		if c.kind == kFloat {
			bits = 32
		}
		f, err := strconv.ParseFloat(string(n), bits)
		if err != nil {
			return pq.Value{}, fmt.Errorf("field %s: %s is out of a %s's range", c.describe(), n, c.Type)
		}
		if bits == 32 {
			return pq.FloatValue(float32(f)), nil
		}
		return pq.DoubleValue(f), nil
	case kBoolean:
		b, ok := v.(bool)
		if !ok {
			return pq.Value{}, c.mismatch(v)
		}
		return pq.BooleanValue(b), nil
	case kString:
		s, ok := v.(string)
		if !ok {
			return pq.Value{}, c.mismatch(v)
		}
		return pq.ByteArrayValue([]byte(s)), nil
	case kBytes:
		s, ok := v.(string)
		if !ok {
			return pq.Value{}, c.mismatch(v)
		}
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return pq.Value{}, fmt.Errorf("field %s: not base64: %w", c.describe(), err)
		}
		return pq.ByteArrayValue(b), nil
	case kDate:
		s, ok := v.(string)
		if !ok {
			return pq.Value{}, c.mismatch(v)
		}
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return pq.Value{}, fmt.Errorf("field %s: %q is not a date (YYYY-MM-DD)", c.describe(), s)
		}
		return pq.Int32Value(int32(t.Unix() / 86400)), nil
	case kTimestamp:
		n, err := c.timestamp(v)
		if err != nil {
			return pq.Value{}, err
		}
		return pq.Int64Value(n), nil
	case kDecimal:
		var s string
		switch v := v.(type) {
		case json.Number:
			s = string(v)
		case string:
			s = v
		default:
			return pq.Value{}, c.mismatch(v)
		}
		n, err := unscaled(s, c.Precision, c.Scale)
		if err != nil {
			return pq.Value{}, fmt.Errorf("field %s: %q: %w", c.describe(), s, err)
		}
		if c.Precision <= 9 {
			return pq.Int32Value(int32(n)), nil
		}
		return pq.Int64Value(n), nil
	}
	return pq.Value{}, fmt.Errorf("field %s: type %s has no values", c.describe(), c.Type)
}

var (
	unitNanos  = map[string]int64{"ms": 1e6, "us": 1e3, "ns": 1}
	epochScale = map[string]int{"s": 9, "ms": 6, "us": 3, "ns": 0}
	epochName  = map[string]string{"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
)

// timestamp converts RFC 3339 text (any offset) or a number of the
// column's epoch unit since 1970 (an exact decimal) to the column's unit since the epoch, UTC. A value finer than
// the unit is refused rather than cut.
func (c *Column) timestamp(v any) (int64, error) {
	per := unitNanos[c.Unit]
	var sec, nsec int64
	switch v := v.(type) {
	case string:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return 0, fmt.Errorf("field %s: %q is not an RFC 3339 time", c.describe(), v)
		}
		sec, nsec = t.Unix(), int64(t.Nanosecond())
	case json.Number:
		n, err := unscaled(string(v), 19, epochScale[c.Epoch])
		if err != nil {
			return 0, fmt.Errorf("field %s: %s is not a time in epoch %s: %w", c.describe(), v, epochName[c.Epoch], err)
		}
		sec, nsec = n/1e9, n%1e9
		if nsec < 0 {
			sec, nsec = sec-1, nsec+1e9
		}
	default:
		return 0, c.mismatch(v)
	}
	if nsec%per != 0 {
		return 0, fmt.Errorf("field %s: %v is finer than the column's unit (%s)", c.describe(), v, c.Unit)
	}
	perSec := 1e9 / per
	if sec > math.MaxInt64/perSec || sec < math.MinInt64/perSec+1 {
		return 0, fmt.Errorf("field %s: %v is out of range", c.describe(), v)
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
