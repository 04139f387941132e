// Command kafka-real runs a real Apache Kafka broker for batchpipe's tests:
// it fetches Kafka with Maven into a cache outside the repository (once),
// formats a single-node KRaft broker in a fresh directory, starts it on
// free loopback ports and writes an env file saying where it listens.
//
//	go run ./tools/kafka-real                      # until Ctrl-C
//	go run ./tools/kafka-real -- go test ./...     # around a command
//
// With a command, the command runs with BATCHPIPE_TEST_KAFKA set to the env
// file, and the broker stops when it ends; kafka-real exits with its status.
// Either way the broker never outlives kafka-real.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/batchpipe/batchpipe/internal/kafkareal"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
)

func main() { os.Exit(run()) }

func run() int {
	version := flag.String("version", envOr("KAFKA_VERSION", kafkareal.DefaultVersion), "Kafka release to fetch and run (or $KAFKA_VERSION)")
	envFile := flag.String("env", "bin/kafka-real.env", "where to write the env file for "+kafkatest.EnvVar)
	dir := flag.String("dir", "", "data directory, kept (default: a temporary one, removed at the end)")
	fetchOnly := flag.Bool("fetch", false, "only fetch Kafka, and print where its jars are")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: kafka-real [flags] [-- command args...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	began := time.Now()
	libs, err := kafkareal.Fetch(*version, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "kafka-real: kafka %s in %s (%.1fs)\n", *version, libs, time.Since(began).Seconds())
	if *fetchOnly {
		fmt.Println(libs)
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	data := *dir
	if data == "" {
		if data, err = os.MkdirTemp("", "kafka-real-"); err != nil {
			fmt.Fprintln(os.Stderr, "kafka-real:", err)
			return 1
		}
		defer os.RemoveAll(data)
	}
	began = time.Now()
	b, err := kafkareal.Start(ctx, kafkareal.Config{Libs: libs, Dir: data})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		b.Stop()
		os.Remove(*envFile)
		fmt.Fprintln(os.Stderr, "kafka-real: stopped")
	}()
	if err := os.MkdirAll(filepath.Dir(*envFile), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "kafka-real:", err)
		return 1
	}
	if err := b.WriteEnv(*envFile); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	abs, _ := filepath.Abs(*envFile)
	fmt.Fprintf(os.Stderr, "kafka-real: ready plaintext=%s sasl=%s ssl=%s env=%s (kafka %s, started in %.1fs, log %s)\n",
		b.Plaintext, b.SASL, b.SSL, abs, b.Version, time.Since(began).Seconds(), filepath.Join(data, "broker.log"))

	if flag.NArg() == 0 {
		select {
		case <-ctx.Done():
		case <-b.Done():
			fmt.Fprintln(os.Stderr, "kafka-real: the broker exited; see", filepath.Join(data, "broker.log"))
			return 1
		}
		return 0
	}
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), kafkatest.EnvVar+"="+abs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "kafka-real:", err)
		return 1
	}
	// The command shares the terminal: a Ctrl-C reaches it directly, and
	// a SIGTERM sent to kafka-real alone is passed on.
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		err = <-waited
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		if ee.ExitCode() < 0 {
			return 1
		}
		return ee.ExitCode()
	case err != nil:
		fmt.Fprintln(os.Stderr, "kafka-real:", err)
		return 1
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
