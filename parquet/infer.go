package parquet

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/batchpipe/batchpipe/batcher"
)

// Infer derives a schema from the JSON objects of b, for trying things out:
// every column optional, in the order its field first appears. A number
// written as an integer is int64, any other number double; strings are
// strings (a time stays text: declare it a timestamp to have one), objects
// structs, arrays lists of what their items have in common. A field whose
// values disagree (a number here, a string there) is a string, and the
// records where it is not are rejected when written. Records that are not
// JSON objects are left out; with none, the schema is one string column
// "value", so that every record is rejected with its reason.
func Infer(b *batcher.Batch) *Schema {
	sh := &shredder{}
	root := &Column{Type: "struct"}
	for i := range b.Len() {
		v, err := sh.decode(b.Record(i))
		if err != nil {
			continue
		}
		if obj, ok := v.(map[string]any); ok {
			mergeObject(root, obj, recordKeys(b.Record(i)))
		}
	}
	if len(root.Fields) == 0 {
		root.Fields = []*Column{{Name: "value", Type: "string"}}
	}
	finish(root.Fields)
	s, err := NewSchema(root.Fields)
	if err != nil {
		// Not reached: an inferred schema is valid by construction.
		s, _ = NewSchema([]*Column{{Name: "value", Type: "string"}})
	}
	return s
}

// recordKeys lists the top-level keys of a JSON object in the order they
// are written: a map forgets it.
func recordKeys(r []byte) []string {
	d := json.NewDecoder(strings.NewReader(string(r)))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var keys []string
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return keys
		}
		k, _ := t.(string)
		keys = append(keys, k)
		var skip json.RawMessage
		if d.Decode(&skip) != nil {
			return keys
		}
	}
	return keys
}

// mergeObject widens struct c with the fields of obj; keys gives their
// order when known.
func mergeObject(c *Column, obj map[string]any, keys []string) {
	if keys == nil {
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	for _, k := range keys {
		v, ok := obj[k]
		if !ok || strings.Contains(k, ".") || k == "" {
			continue // a path cannot name it
		}
		var f *Column
		for _, g := range c.Fields {
			if g.Name == k {
				f = g
			}
		}
		if f == nil {
			f = &Column{Name: k}
			c.Fields = append(c.Fields, f)
		}
		merge(f, v)
	}
}

// merge widens column c (Type "" while only nulls were seen) to take v.
func merge(c *Column, v any) {
	var t string
	switch v := v.(type) {
	case nil:
		return
	case bool:
		t = "boolean"
	case json.Number:
		t = "int64"
		if strings.ContainsAny(string(v), ".eE") {
			t = "double"
		}
	case string:
		t = "string"
	case []any:
		t = "list"
	case map[string]any:
		t = "struct"
	}
	switch {
	case c.Type == "":
		c.Type = t
	case c.Type == t:
	case c.Type == "int64" && t == "double", c.Type == "double" && t == "int64":
		c.Type = "double"
	default:
		c.Type, c.Items, c.Fields = "string", nil, nil
		c.mixed = true
	}
	if c.mixed {
		return
	}
	switch v := v.(type) {
	case []any:
		if c.Items == nil {
			c.Items = &Column{}
		}
		for _, item := range v {
			merge(c.Items, item)
		}
	case map[string]any:
		mergeObject(c, v, nil)
	}
}

// finish gives a type to columns that held only nulls (or empty lists):
// string.
func finish(cols []*Column) {
	for _, c := range cols {
		if c.Type == "" {
			c.Type = "string"
		}
		if c.Type == "list" {
			if c.Items.Type == "" {
				c.Items.Type = "string"
			}
			if c.Items.Type == "list" || c.Items.Type == "struct" {
				finish([]*Column{c.Items})
			}
		}
		if c.Type == "struct" {
			finish(c.Fields)
		}
	}
}
