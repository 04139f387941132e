package kafka

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
)

// An unwrapped is what parseEnvelope restores from an envelope.
type unwrapped struct {
	Partition int32 // -1 when the envelope has none
	Timestamp time.Time
	Key       []byte // nil for a null key
	Value     []byte // nil for a null value (a tombstone)
	Headers   []batcher.Header
}

type wireHeader struct {
	Key         *string `json:"key"`
	Value       *string `json:"value"`
	ValueBase64 *string `json:"value_base64"`
}

type wire struct {
	Partition   *int32          `json:"partition"`
	Timestamp   *string         `json:"timestamp"`
	Key         json.RawMessage `json:"key"`
	KeyBase64   *string         `json:"key_base64"`
	Headers     []wireHeader    `json:"headers"`
	Value       json.RawMessage `json:"value"`
	ValueBase64 *string         `json:"value_base64"`
}

// parseEnvelope reads one envelope written by appendEnvelope and returns the record it
// describes, byte for byte. The topic and offset are not read: a restore
// writes where it is told to.
func parseEnvelope(line []byte) (*unwrapped, error) {
	var w wire
	if err := json.Unmarshal(line, &w); err != nil {
		return nil, fmt.Errorf("not an envelope: %w", err)
	}
	r := &unwrapped{Partition: -1}
	if w.Partition != nil {
		if *w.Partition < 0 {
			return nil, fmt.Errorf("envelope: partition %d", *w.Partition)
		}
		r.Partition = *w.Partition
	}
	if w.Timestamp != nil {
		ts, err := time.Parse(time.RFC3339Nano, *w.Timestamp)
		if err != nil {
			return nil, fmt.Errorf("envelope: timestamp: %w", err)
		}
		r.Timestamp = ts
	}
	var err error
	if w.Value == nil && w.ValueBase64 == nil {
		return nil, errors.New(`envelope: no "value" nor "value_base64"`)
	}
	if r.Value, err = payload("value", w.Value, w.ValueBase64); err != nil {
		return nil, err
	}
	if r.Key, err = payload("key", w.Key, w.KeyBase64); err != nil {
		return nil, err
	}
	for i, h := range w.Headers {
		if h.Key == nil {
			return nil, fmt.Errorf("envelope: header %d has no key", i+1)
		}
		var v []byte
		switch {
		case h.Value != nil && h.ValueBase64 != nil:
			return nil, fmt.Errorf(`envelope: header %q has both "value" and "value_base64"`, *h.Key)
		case h.ValueBase64 != nil:
			if v, err = base64.StdEncoding.DecodeString(*h.ValueBase64); err != nil {
				return nil, fmt.Errorf("envelope: header %q: value_base64: %w", *h.Key, err)
			}
		case h.Value != nil:
			v = append([]byte{}, *h.Value...) // empty, not null
		}
		r.Headers = append(r.Headers, batcher.Header{Key: *h.Key, Value: v})
	}
	return r, nil
}

// payload restores a key or a value: JSON other than a string stands for
// itself, a string for its contents, null for nothing.
func payload(name string, raw json.RawMessage, b64 *string) ([]byte, error) {
	switch {
	case raw != nil && b64 != nil:
		return nil, fmt.Errorf(`envelope: both %q and "%s_base64"`, name, name)
	case b64 != nil:
		p, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, fmt.Errorf("envelope: %s_base64: %w", name, err)
		}
		return append([]byte{}, p...), nil
	case raw == nil, bytes.Equal(raw, []byte("null")):
		return nil, nil
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("envelope: %s: %w", name, err)
		}
		return append([]byte{}, s...), nil // empty, not null
	}
	return bytes.Clone(raw), nil
}
