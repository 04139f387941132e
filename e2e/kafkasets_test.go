package e2e

// Which tests a pass on a real Kafka broker runs: BATCHPIPE_TEST_KAFKA_TESTS
// (make test-kafka-real KAFKA_TESTS=...) names a set, and TestMain runs
// only its tests; without it every test runs.
//
//	broker       the tests that take a broker that may be real: they call
//	             one of brokerHelpers. A test on kfake only (fakeKafka)
//	             is not one: on a real broker it would only be skipped.
//	differences  those of them listed in brokerDifferences.
//	fake         the tests on kfake only (they call fakeKafka), which a
//	             pass on a real broker skips: .ci/run runs make test on
//	             the real broker, then these on kfake.
//
// The set comes from what each test calls, read from this package's
// source, not from its name: a new test that takes a broker joins the real
// broker's pass whatever it is called.

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// brokerHelpers are the helpers that give a test a broker, the real one
// when BATCHPIPE_TEST_KAFKA is set.
var brokerHelpers = []string{"newKafka", "ownKafka", "saslKafka"}

// brokerDifferences are the tests of what differs between broker versions:
// transactions, compaction, deleted records, security, the sink's produce
// and transaction requests, static members and cooperative rebalances.
// .ci/run runs them on the last Kafka 3 too.
var brokerDifferences = []string{
	"TestKafkaAbortedTransactions",
	"TestKafkaCompactedTopic",
	"TestKafkaCooperativeJoinKeepsPartitions",
	"TestKafkaDeletedRecords",
	"TestKafkaDuplicateInstanceIDIsFenced",
	"TestKafkaExactlyOnceIdempotentHTTP",
	"TestKafkaSASL",
	"TestKafkaSinkCompression",
	"TestKafkaSinkEnvelopeRoundTrip",
	"TestKafkaSinkFromKafka",
	"TestKafkaSinkKeysJavaPartitions",
	"TestKafkaSinkKeysKeepOrder",
	"TestKafkaSinkNoSoftMemoryLimit",
	"TestKafkaSinkPartitionByKeepsOrder",
	"TestKafkaSinkRecordTooLarge",
	"TestKafkaSinkSASL",
	"TestKafkaSinkStdinExact",
	"TestKafkaSinkUnusableAtStart",
	"TestKafkaStaticMemberRestartsWithoutRebalance",
	"TestKafkaTLS",
	"TestKafkaTxnSinkCommitsPastTransactionTail",
	"TestKafkaTxnSinkKills",
	"TestKafkaTxnSinkRecordTooLarge",
	"TestKafkaTxnSinkTwoMembers",
}

// kafkaRun returns the -test.run pattern of set, narrowed by run (the -run
// given, if any). It fails on a set it does not know, and on a name in
// brokerDifferences that is no test taking a broker, so that the list
// cannot drift from the tests.
func kafkaRun(set, run string) (string, error) {
	broker, err := brokerTests(".")
	if err != nil {
		return "", err
	}
	var names []string
	switch set {
	case "broker":
		names = broker
	case "fake":
		if names, err = callers(".", []string{"fakeKafka"}); err != nil {
			return "", err
		}
	case "differences":
		for _, name := range brokerDifferences {
			if !slices.Contains(broker, name) {
				return "", fmt.Errorf("brokerDifferences: %s takes no broker (or is gone)", name)
			}
		}
		names = brokerDifferences
	default:
		return "", fmt.Errorf("BATCHPIPE_TEST_KAFKA_TESTS=%q: want broker, differences or fake", set)
	}
	if run != "" {
		re, err := regexp.Compile(run)
		if err != nil {
			return "", fmt.Errorf("-run %q: %w", run, err)
		}
		names = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return !re.MatchString(n) })
	}
	if len(names) == 0 {
		return "^$", nil // none: -run picked tests of another package
	}
	return "^(" + strings.Join(names, "|") + ")$", nil
}

// brokerTests lists the tests in dir's test files that call one of
// brokerHelpers, or a function that does, in their body or a closure in it.
func brokerTests(dir string) ([]string, error) {
	return callers(dir, brokerHelpers)
}

// callers lists the tests in dir's test files that call one of helpers, or
// a function that does, in their body or a closure in it.
func callers(dir string, helpers []string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		return nil, err
	}
	var funcs []*ast.FuncDecl
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Body != nil {
				funcs = append(funcs, fn)
			}
		}
	}
	// The helpers, and the functions calling them, until no more join.
	helpers = slices.Clone(helpers)
	for grew := true; grew; {
		grew = false
		for _, fn := range funcs {
			name := fn.Name.Name
			if !strings.HasPrefix(name, "Test") && !slices.Contains(helpers, name) && callsAny(fn.Body, helpers) {
				helpers = append(helpers, name)
				grew = true
			}
		}
	}
	var names []string
	for _, fn := range funcs {
		if strings.HasPrefix(fn.Name.Name, "Test") && callsAny(fn.Body, helpers) {
			names = append(names, fn.Name.Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// callsAny says whether body calls one of funcs by name.
func callsAny(body ast.Node, funcs []string) bool {
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if id, ok := c.Fun.(*ast.Ident); ok && slices.Contains(funcs, id.Name) {
				found = true
			}
		}
		return !found
	})
	return found
}

// The sets as CI uses them: each test of brokerDifferences takes a broker;
// a test that takes one through a helper of its own is in the broker set,
// one on kfake only is not.
func TestKafkaSets(t *testing.T) {
	if _, err := kafkaRun("differences", ""); err != nil {
		t.Fatal(err)
	}
	broker, err := brokerTests(".")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"TestKafkaDrainUntilEnd":       true,  // newKafka in a subtest
		"TestKafkaRollingRestart":      true,  // ownKafka in rollingRestart
		"TestKafkaSASL":                true,  // saslKafka
		"TestKafkaFrozenFinalCommit":   false, // fakeKafka only
		"TestKafkaUsage":               false, // no broker at all
		"TestExecBatchBoundaries":      false,
		"TestS3READMERecipesTwice":     true, // a Kafka recipe, whatever the name
		"TestKafkaSilentBrokerAtStart": false,
	} {
		if got := slices.Contains(broker, name); got != want {
			t.Errorf("%s in the broker set: %v, want %v", name, got, want)
		}
	}
	fake, err := callers(".", []string{"fakeKafka"})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"TestKafkaFrozenFinalCommit": true,
		"TestKafkaRollingRestart":    false,
		"TestExecBatchBoundaries":    false,
	} {
		if got := slices.Contains(fake, name); got != want {
			t.Errorf("%s in the fake set: %v, want %v", name, got, want)
		}
	}
}
