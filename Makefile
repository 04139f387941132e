GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/batchpipe/batchpipe/cmd.version=$(VERSION)

.PHONY: build test bench demo kafka-dev clean chaos fuzz

FUZZTIME ?= 10s

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/batchpipe .

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./batcher ./sources ./sinks
	./testdata/bench.sh

demo: build
	rm -rf bin/demo
	./bin/batchpipe -n 250 file --per-batch 'bin/demo/batch-{seq}.ndjson' < testdata/sample.ndjson
	wc -l bin/demo/*.ndjson

# A local Kafka (in-process kfake) on 127.0.0.1:9092 with a topic "demo"
# seeded with testdata/sample.ndjson; runs until Ctrl-C.
KAFKA_DEV_FLAGS ?= -addr 127.0.0.1:9092 -topic demo -partitions 4 -seed testdata/sample.ndjson
kafka-dev:
	$(GO) run ./tools/kafka-dev $(KAFKA_DEV_FLAGS)

clean:
	rm -rf bin bench

chaos: build
	./testdata/chaos.sh bin/batchpipe

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzFraming -fuzztime $(FUZZTIME) ./sources
	$(GO) test -run '^$$' -fuzz FuzzBlocksBatchLikeRecords -fuzztime $(FUZZTIME) ./batcher
	$(GO) test -run '^$$' -fuzz FuzzJSONString -fuzztime $(FUZZTIME) ./internal/envelope
	$(GO) test -run '^$$' -fuzz FuzzRoundTrip -fuzztime $(FUZZTIME) ./internal/envelope
	$(GO) test -run '^$$' -fuzz FuzzFormat -fuzztime $(FUZZTIME) ./sinks
