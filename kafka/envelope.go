package kafka

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/batchpipe/batchpipe/batcher"
)

// appendEnvelope appends one JSON object describing a Kafka record, on one
// line, like kcat -J:
//
//	{"topic":"t","partition":0,"offset":7,"timestamp":"2024-05-01T10:00:00.123Z",
//	 "key":"k","headers":[{"key":"h","value":"v"}],"value":{"a":1}}
//
// The key and the value are embedded as JSON when they are compact JSON
// other than a string (so the object stays on one line and --unwrap gets
// the same bytes back), else as a string when they are valid UTF-8, else
// base64-encoded under "key_base64"/"value_base64".
// A null key or value is null. Header values are strings or, when not
// UTF-8, base64 under "value_base64".
func appendEnvelope(dst []byte, m *batcher.Meta, key, value []byte, keyNull, valueNull bool) []byte {
	dst = append(dst, `{"topic":`...)
	dst = appendJSONString(dst, m.Topic)
	dst = append(dst, `,"partition":`...)
	dst = strconv.AppendInt(dst, int64(m.Partition), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, m.Offset, 10)
	dst = append(dst, `,"timestamp":`...)
	if m.Timestamp.IsZero() {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '"')
		dst = m.Timestamp.UTC().AppendFormat(dst, envelopeTime)
		dst = append(dst, '"')
	}
	dst = appendPayload(dst, "key", key, keyNull)
	dst = append(dst, `,"headers":[`...)
	for i, h := range m.Headers {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"key":`...)
		dst = appendJSONString(dst, h.Key)
		if utf8.Valid(h.Value) {
			dst = append(dst, `,"value":`...)
			dst = appendJSONString(dst, string(h.Value))
		} else {
			dst = append(dst, `,"value_base64":"`...)
			dst = base64.StdEncoding.AppendEncode(dst, h.Value)
			dst = append(dst, '"')
		}
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	dst = appendPayload(dst, "value", value, valueNull)
	return append(dst, '}')
}

// appendPayload appends ,"name":… for a key or a value, so that it can be
// restored byte for byte (batchpipe's kafka --unwrap): JSON is embedded
// only when it is compact and not a string nor null, exactly as it is;
// other UTF-8 (pretty JSON, a JSON string, text) is a string; the rest is
// base64.
func appendPayload(dst []byte, name string, p []byte, null bool) []byte {
	dst = append(dst, `,"`...)
	dst = append(dst, name...)
	switch {
	case null:
		return append(dst, `":null`...)
	case !utf8.Valid(p):
		dst = append(dst, `_base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, p)
		return append(dst, '"')
	}
	dst = append(dst, `":`...)
	// null itself would read back as no value at all.
	if len(p) > 0 && p[0] != '"' && string(p) != "null" && json.Valid(p) {
		mark := len(dst)
		buf := bytes.NewBuffer(dst)
		json.Compact(buf, p) // cannot fail: p is valid
		if dst = buf.Bytes(); bytes.Equal(dst[mark:], p) {
			return dst
		}
		dst = dst[:mark]
	}
	return appendJSONString(dst, string(p))
}

// envelopeTime is RFC 3339 in UTC with milliseconds, Kafka's precision.
const envelopeTime = "2006-01-02T15:04:05.000Z07:00"

const hexDigits = "0123456789abcdef"

// appendJSONString appends s, valid UTF-8, as a JSON string. Like
// encoding/json it escapes U+2028 and U+2029, which end lines in JavaScript.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			start = i + size
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
