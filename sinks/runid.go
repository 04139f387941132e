package sinks

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// RunID is {run}: the same for every batch of a run, different from any
// other run's, and sorting in the order runs started. It is the start time
// in UTC to the millisecond, then 24 random bits for runs started in the
// same millisecond (on other machines writing to the same place, say):
// 20260102T150405.123Z-9f3a1c.
var RunID = sync.OnceValue(func() string {
	var r [3]byte
	rand.Read(r[:])
	return time.Now().UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(r[:])
})

// uniquePlaceholders are those that alone give each batch of a run a name
// of its own: its number, or its offsets where every batch holds one
// partition's records (PerBatch checks that for each batch).
var uniquePlaceholders = []string{"{seq}", "{batch_id}", "{first_offset}", "{last_offset}"}

// uniqueNames refuses a per-batch template that would give two batches of
// a run the same name, so that the second would fail: "out.log", or
// "{date}.log", or "{run}.log".
func uniqueNames(tmpl string) error {
	for _, p := range uniquePlaceholders {
		if strings.Contains(tmpl, p) {
			return nil
		}
	}
	ext := filepath.Ext(tmpl)
	if strings.ContainsAny(ext, "{}/") {
		ext = ""
	}
	hint := strings.TrimSuffix(tmpl, ext) + "-{seq}" + ext
	return fmt.Errorf("per-batch template %q gives every batch of a run the same name, so the second batch would fail: put {seq} in it, as in %q (and {run} to keep runs apart)", tmpl, hint)
}
