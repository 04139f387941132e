GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/batchpipe/batchpipe/cmd.version=$(VERSION)

# man: the man pages in docs/man, generated from the commands' --help;
# make test fails (TestManPagesUpToDate) when they are stale.
.PHONY: build test man bench demo kafka-dev kafka-real test-kafka-real test-kfake-only clean chaos memlong fuzz

# make fuzz runs each target for a count of inputs, about ten seconds'
# worth on two cores; FUZZTIME=1000x (or 30s) sets one budget for all. A
# budget in seconds can fail a run that found nothing: Go's fuzzing
# coordinator races its own deadline ("context deadline exceeded",
# golang/go#75804, fixed for Go 1.27).
define fuzz-target
	$(GO) test -run '^$$' -fuzz '^$(2)$$' -fuzztime $(or $(FUZZTIME),$(3)x) ./$(1)
endef

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/batchpipe .
	$(GO) build -o bin/kafka-dev ./tools/kafka-dev

man:
	COLUMNS=80 $(GO) run ./tools/mangen docs/man

# The packages' tests run with -race; the end-to-end tests (e2e/) without,
# at the same time: there -race instruments only the harness (the binary
# under test is built without it), and made the in-process kfake and the
# test binary, as the exec sink's child, several times slower. The
# real-broker pass runs them with -race.
# The end-to-end tests marked parallel mostly wait (on session timeouts,
# a broker's outage): more of them run at once than there are cores.
# E2E_ALONE waits out broker outages of minutes, and runs beside the rest,
# in a test process of its own, where a parallel test would start only
# after every other test ended.
GO_TEST := $(GO) test -count=1 -timeout 30m
E2E_TEST := $(GO_TEST) -parallel 4
E2E_ALONE := ^TestKafkaOutageSinkCatchesUp$$
test:
	$(GO) vet ./...
	$(GO_TEST) -race $$($(GO) list ./... | grep -v '/e2e$$') & unit=$$!; \
	$(E2E_TEST) -run '$(E2E_ALONE)' ./e2e & alone=$$!; \
	$(E2E_TEST) -skip '$(E2E_ALONE)' ./e2e; e2e=$$?; \
	wait $$alone; alone=$$?; wait $$unit; unit=$$?; [ $$e2e -eq 0 ] && [ $$alone -eq 0 ] && [ $$unit -eq 0 ]

# The Go benchmarks, then testdata/bench.sh, which runs every
# testdata/bench-*.sh after its own. The Kafka sink's runs against a real
# broker (Kafka $(KAFKA_VERSION), as make kafka-real) when Java is there,
# else against kfake, and says which; KAFKA_BENCH=kfake picks kfake.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./batcher ./sources ./sinks ./kafka ./parquet
	KAFKA_VERSION=$(KAFKA_VERSION) ./testdata/bench.sh

demo: build
	rm -rf bin/demo
	./bin/batchpipe -n 250 file --per-batch 'bin/demo/batch-{seq}.ndjson' < testdata/sample.ndjson
	wc -l bin/demo/*.ndjson

# A local Kafka (in-process kfake) on 127.0.0.1:9092 with a topic "demo"
# seeded with testdata/sample.ndjson; runs until Ctrl-C. In a script, run
# bin/kafka-dev (make build) instead: killing make leaves go run's child.
KAFKA_DEV_FLAGS ?= -addr 127.0.0.1:9092 -topic demo -partitions 4 -seed testdata/sample.ndjson
kafka-dev:
	$(GO) run ./tools/kafka-dev $(KAFKA_DEV_FLAGS)

# A real Apache Kafka broker (fetched with Maven into ~/.cache/batchpipe,
# once) on free loopback ports, until Ctrl-C. It writes bin/kafka-real.env;
# BATCHPIPE_TEST_KAFKA=bin/kafka-real.env runs the Kafka tests against it.
KAFKA_VERSION ?= 4.1.1
bin/kafka-real: $(wildcard tools/kafka-real/*.go internal/kafkareal/*.go internal/testcert/*.go kafka/kafkatest/*.go)
	$(GO) build -o $@ ./tools/kafka-real

kafka-real: bin/kafka-real
	exec bin/kafka-real -version $(KAFKA_VERSION)

# The Kafka tests against a real broker, started and stopped around them.
# The kafka package's tests all run, at the same time as the end-to-end
# tests that KAFKA_TESTS picks, by what they do, not by their names
# (BATCHPIPE_TEST_KAFKA_TESTS, see e2e/kafkasets_test.go):
#   broker       every test that takes a broker (newKafka, ownKafka,
#                saslKafka);
#   differences  those of what differs between broker versions, listed in
#                brokerDifferences, which .ci/run runs on the last 3.x.
# A test on kfake only (fakeKafka) is in neither: make test runs it.
# KAFKA_RUN narrows them down, as go test -run.
KAFKA_TESTS ?= broker
KAFKA_RUN ?=
test-kafka-real: bin/kafka-real
	exec bin/kafka-real -version $(KAFKA_VERSION) -- sh -c '\
	$(GO_TEST) -race $(if $(KAFKA_RUN),-run "$(KAFKA_RUN)") ./kafka/... & kafka=$$!; \
	BATCHPIPE_TEST_KAFKA_TESTS=$(KAFKA_TESTS) $(E2E_TEST) -race -run "$(KAFKA_RUN)" ./e2e; e2e=$$?; \
	wait $$kafka && exit $$e2e'

# The tests on kfake only, which a pass on a real broker skips: the kafka
# package's whole (its kfake-only tests call kafkatest.FakeOnly) and the
# end-to-end tests that call fakeKafka. .ci/run runs make test with a real
# broker around it, then these.
test-kfake-only:
	$(GO_TEST) -race ./kafka/... & kafka=$$!; \
	BATCHPIPE_TEST_KAFKA_TESTS=fake $(E2E_TEST) ./e2e; e2e=$$?; \
	wait $$kafka && exit $$e2e

clean:
	rm -rf bin bench

chaos: build
	./testdata/chaos.sh bin/batchpipe

# The memory bound over a long run: MEMLONG_SECONDS (60) each for exec and
# for http with a slow server.
MEMLONG_SECONDS ?= 60
memlong: build
	./testdata/memlong.sh bin/batchpipe $(MEMLONG_SECONDS)

fuzz:
	$(call fuzz-target,sources,FuzzFraming,200000)
	$(call fuzz-target,batcher,FuzzBlocksBatchLikeRecords,80000)
	$(call fuzz-target,batcher,FuzzKeyedBlocksBatchLikeRecords,80000)
	$(call fuzz-target,batcher,FuzzJSONFind,250000)
	$(call fuzz-target,kafka,FuzzJSONString,25000)
	$(call fuzz-target,kafka,FuzzRoundTrip,40000)
	$(call fuzz-target,sinks,FuzzFormat,8000)
	$(call fuzz-target,parquet,FuzzParse,15000)
