package cmd

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/sinks"
)

// parse runs the command line up to the point where the pipeline would
// start, and returns the config and sink it would run with.
func parse(t *testing.T, args ...string) (batcher.Config, batcher.Sink, string, int) {
	t.Helper()
	var errb bytes.Buffer
	o := &options{streams: Streams{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &errb}}
	var cfg batcher.Config
	var sink batcher.Sink
	o.runHook = func(c batcher.Config, open sinkOpener) error {
		cfg = c
		var err error
		sink, err = open(sinkEnv{out: o.streams.Out, diag: o.streams.Err})
		if err != nil {
			return refused(err)
		}
		if c, ok := sink.(batcher.Closer); ok {
			c.Close()
		}
		return nil
	}
	code := execute(o, args)
	return cfg, sink, errb.String(), code
}

// execute runs the command line with o, writes its error to o's stderr and
// returns the exit status it means.
func execute(o *options, args []string) int {
	err := executeRoot(newRoot(o), args)
	if err == nil {
		return exitOK
	}
	io.WriteString(o.streams.Err, err.Error())
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailed
}

func TestFlagsToConfig(t *testing.T) {
	tests := []struct {
		args []string
		want batcher.Config
	}{
		{[]string{"file", "-"}, batcher.Config{MaxRecords: 1000, MaxBytes: 1 << 20, Linger: time.Second, Delim: '\n',
			Parallel: 1, Retries: 3, Backoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second, ShutdownTimeout: 30 * time.Second}},
		{[]string{"-n", "5", "-b", "64KiB", "-t", "0", "-0", "-j", "4", "--retries", "0", "file", "-"},
			batcher.Config{MaxRecords: 5, MaxBytes: 64 << 10, Linger: 0, Delim: 0, Parallel: 4, Retries: 0,
				Backoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second, ShutdownTimeout: 30 * time.Second}},
		{[]string{"-d", `\t`, "-b", "4MB", "file", "-"}, batcher.Config{MaxRecords: 1000, MaxBytes: 4000000, Linger: time.Second,
			Delim: '\t', Parallel: 1, Retries: 3, Backoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second, ShutdownTimeout: 30 * time.Second}},
	}
	for _, tt := range tests {
		cfg, _, stderr, code := parse(t, tt.args...)
		if code != exitOK {
			t.Fatalf("%q: exit %d: %s", tt.args, code, stderr)
		}
		cfg.Logger = nil
		if !reflect.DeepEqual(cfg, tt.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tt.args, cfg, tt.want)
		}
	}
}

func TestFileSinkChoice(t *testing.T) {
	dir := t.TempDir()
	_, s, _, _ := parse(t, "file", "-")
	if _, ok := s.(*sinks.File); !ok {
		t.Errorf("file -: %T", s)
	}
	_, s, _, _ = parse(t, "file", "--per-batch", dir+"/{seq}")
	if _, ok := s.(*sinks.PerBatch); !ok {
		t.Errorf("--per-batch: %T", s)
	}
}

func TestUsageErrorsSayWhy(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-n", "0", "file", "-"}, "--max-records must be at least 1"},
		{[]string{"-j", "100000", "file", "-"}, "--parallel must be between 1 and 1024"},
		{[]string{"-b", "-1", "file", "-"}, `"-1" is not a size`},
		{[]string{"-0", "-d", ",", "file", "-"}, "-0 and -d both set the delimiter"},
		{[]string{"file", "--fsync", "-"}, "--fsync makes no sense with stdout"},
		{[]string{"file"}, "give one PATH"},
		{[]string{"nosuch"}, `unknown sink "nosuch"`},
		{[]string{"--max-recrods", "3", "file", "-"}, "unknown flag: --max-recrods"},
	}
	for _, tt := range tests {
		_, _, stderr, code := parse(t, tt.args...)
		if code != exitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("%q: exit %d, stderr %q, want %q", tt.args, code, stderr, tt.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1000": 1000, "64KiB": 64 << 10, "64K": 64 << 10, "64k": 64 << 10, "4MB": 4000000,
		"1MiB": 1 << 20, "2G": 2 << 30, "3GB": 3000000000, "10B": 10, "1 MiB": 1 << 20,
		"1m": 1 << 20, "64kb": 64000, "1.5M": 3 << 19, "1.5MB": 1500000, "0.5k": 512, "4GiB": 4 << 30,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "1.5B", "1TB", "99999999999GiB", "999999999G", "5G", "1e3", "1/2K", "+1", "K"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestExitStatus(t *testing.T) {
	o := &options{streams: Streams{Err: &bytes.Buffer{}}, quiet: true}
	tests := []struct {
		st   batcher.Stats
		err  error
		sig  bool
		want int
	}{
		{batcher.Stats{Read: 5, Delivered: 5}, nil, false, 0},
		{batcher.Stats{Read: 5, Delivered: 4, Undelivered: 1}, nil, false, 1},
		{batcher.Stats{Read: 5, Delivered: 4, Undelivered: 1}, nil, true, 1},
		{batcher.Stats{Read: 5, Delivered: 4, DeadLettered: 1}, nil, false, 3},
		{batcher.Stats{Read: 5, Delivered: 4, DeadLettered: 1}, nil, true, 3}, // dead letters first
		{batcher.Stats{Read: 5, Delivered: 5}, nil, true, 143},
	}
	for _, tt := range tests {
		var sig os.Signal
		if tt.sig {
			sig = syscall.SIGTERM
		}
		err := o.report(tt.st, gauges{}, tt.err, sig)
		got := 0
		if e, ok := err.(exitError); ok {
			got = int(e)
		}
		if got != tt.want {
			t.Errorf("%+v sig %v: exit %d, want %d", tt.st, tt.sig, got, tt.want)
		}
	}
}

func TestSummaryCounts(t *testing.T) {
	one := summary(batcher.Stats{Read: 1, BytesRead: 2, Delivered: 1, BatchesDone: 1, Retries: 1})
	for _, want := range []string{"batchpipe: 1 record (2 B) read", "1 delivered in 1 batch,", "1 retry"} {
		if !strings.Contains(one, want) {
			t.Errorf("%q lacks %q", one, want)
		}
	}
	many := summary(batcher.Stats{Read: 5, Delivered: 5, BatchesDone: 2, Retries: 3, Reasons: map[string]int64{"size": 1, "eof": 1}})
	for _, want := range []string{"5 records", "in 2 batches (flushed: 1 size, 1 eof)", "3 retries"} {
		if !strings.Contains(many, want) {
			t.Errorf("%q lacks %q", many, want)
		}
	}
}

func TestVersionOf(t *testing.T) {
	for _, tc := range []struct {
		set  string
		info *debug.BuildInfo
		want string
	}{
		{"1.4.0", &debug.BuildInfo{Main: debug.Module{Version: "v9.9.9"}}, "1.4.0"},
		{"dev", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"}, // go install …@v1.2.3
		{"dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}, "dev (0123456789ab, modified)"},
		{"dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{"dev", nil, "dev"},
	} {
		if got := versionOf(tc.set, tc.info); got != tc.want {
			t.Errorf("versionOf(%q, %+v) = %q, want %q", tc.set, tc.info, got, tc.want)
		}
	}
}
