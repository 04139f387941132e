package sinks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batchpipe/batchpipe/batcher"
)

// A symbolic link planted at out/<key>, or at a file's name, does not take
// the key's batches where it points, unless FollowSymlinks.
func TestPerBatchRefusesPlantedSymlinks(t *testing.T) {
	for _, follow := range []bool{false, true} {
		dir, elsewhere := t.TempDir(), t.TempDir()
		out := filepath.Join(dir, "out")
		os.MkdirAll(filepath.Join(out, "plain"), 0o755)
		os.MkdirAll(filepath.Join(out, "k2"), 0o755)
		if err := os.Symlink(elsewhere, filepath.Join(out, "victim")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(elsewhere, "f"), filepath.Join(out, "k2", "1")); err != nil {
			t.Fatal(err)
		}
		s, err := NewPerBatch(filepath.Join(out, "{key}", "{seq}"), Lines)
		if err != nil {
			t.Fatal(err)
		}
		s.FollowSymlinks = follow
		for _, key := range []string{"victim", "k2", "plain", "new"} {
			kafkaBatch(t, "t", 0, 0, 1, key, func(b *batcher.Batch) {
				err := s.Deliver(context.Background(), b)
				switch {
				case follow && key == "k2":
					// A link to no file: nothing to write through, as before.
				case follow || key == "plain" || key == "new":
					if err != nil {
						t.Errorf("follow %v, key %s: %v", follow, key, err)
					}
				case err == nil || !errors.Is(err, errSymlink) || !batcher.IsPermanent(err) || !strings.Contains(err.Error(), filepath.Join(out, key)):
					t.Errorf("key %s: want a permanent error naming %s a symbolic link, got %v", key, filepath.Join(out, key), err)
				}
			})
		}
		got, _ := os.ReadDir(elsewhere)
		if want := map[bool]int{false: 0, true: 1}[follow]; len(got) != want {
			t.Errorf("follow %v: %d files written through the links, want %d", follow, len(got), want)
		}
		for _, key := range []string{"plain", "new"} {
			if b, err := os.ReadFile(filepath.Join(out, key, "1")); err != nil || string(b) != "r\n" {
				t.Errorf("key %s: %q, %v", key, b, err)
			}
		}
	}
}

// A key too long for a file name lands under its short form, apart from
// every other key.
func TestPerBatchLongKeysLand(t *testing.T) {
	dir := t.TempDir()
	s, err := NewPerBatch(filepath.Join(dir, "{key}", "x-{key}-{seq}"), Lines)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("k", 10<<10)
	keys := []string{long, long[1:] + "j", strings.Repeat("/", 100), strings.Repeat("/", 99) + "?", strings.Repeat("k", maxName), strings.Repeat("k", maxName+1)}
	names := map[string]string{}
	for _, key := range keys {
		kafkaBatch(t, "t", 0, 0, 1, key, func(b *batcher.Batch) {
			if err := s.Deliver(context.Background(), b); err != nil {
				t.Fatalf("key of %d bytes: %v", len(key), err)
			}
			name := s.Name(b)
			if other, ok := names[name]; ok {
				t.Errorf("keys %.20q and %.20q share %s", other, key, name)
			}
			names[name] = key
			rel, _ := filepath.Rel(dir, name)
			for _, c := range strings.Split(rel, "/") {
				if len(c) > maxName {
					t.Errorf("component of %d bytes: %.40s…", len(c), c)
				}
			}
			if b, err := os.ReadFile(name); err != nil || string(b) != "r\n" {
				t.Errorf("%s: %q, %v", name, b, err)
			}
		})
	}
	if got, want := shortName(strings.Repeat("%2F", 100)), strings.Repeat("%2F", 53)+"%~"; !strings.HasPrefix(got, want) || len(got) != 159+2+64 {
		t.Errorf("short form %q, want %q and a hash", got, want)
	}
	if got := shortName(strings.Repeat("k", maxName)); got != strings.Repeat("k", maxName) {
		t.Errorf("a name of %d bytes was shortened", maxName)
	}
}

func TestPerBatchRefusesDotDotAfterAPlaceholder(t *testing.T) {
	if _, err := NewPerBatch("out/{key}/../{seq}", Lines); err == nil || !strings.Contains(err.Error(), "'..'") {
		t.Fatalf("want an error about '..', got %v", err)
	}
	if _, err := NewPerBatch("../out/{key}/{seq}", Lines); err != nil {
		t.Fatalf("'..' in the fixed directory: %v", err)
	}
}
