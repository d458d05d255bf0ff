# Herald. `make run` starts a dev agent; `make test` runs every test.
GO        ?= go
BIN       := bin
MODULE    := github.com/herald-sd/herald
# Where `go install` puts tools: GOBIN, else GOPATH/bin.
GOBIN_DIR := $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/herald-sd/herald/cmd/herald/internal/version.Version=$(VERSION)
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
GOIMPORTS_VERSION          := v0.52.0

.PHONY: all build install run test test-short nemesis abuse bench lint proto fuzz clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# herald into GOBIN (else GOPATH/bin), stamped with `git describe`.
install:
	$(GO) install -ldflags "$(LDFLAGS)" ./cmd/herald
	@echo "installed $(GOBIN_DIR)/herald $(VERSION)"

run: build
	@echo "Starting a dev agent: DNS 127.0.0.1:8600, gRPC 127.0.0.1:8700, HTTP 127.0.0.1:8800"
	@echo "In another shell:"
	@echo "  $(BIN)/herald register -service api -id api-1 -address 10.0.0.5 -port 9000"
	@echo "  dig @127.0.0.1 -p 8600 api.service.herald SRV"
	@echo "  $(BIN)/herald watch api"
	@echo "  curl 127.0.0.1:8800/v1/services/api    # the JSON API; web console: http://127.0.0.1:8800/ui/"
	$(BIN)/herald agent -dev

# The race detector needs cgo and a C compiler; without them, test without it.
RACE := $(shell [ "$$($(GO) env CGO_ENABLED)" = 1 ] && command -v "$$($(GO) env CC)" >/dev/null 2>&1 && echo -race)

# Every test, with the race detector when the machine can build it. Then the
# tests of Consul's Go client and of the web console in headless Chromium
# against a real agent: modules of their own (testenv/consulapi,
# testenv/browser), so that the Consul client and the browser driver stay
# out of Herald's go.mod.
test:
	$(GO) vet ./...
	@[ -n "$(RACE)" ] || echo "make test: no C compiler for the race detector (apt-get install gcc); testing without -race"
	$(GO) test $(RACE) -count=1 -timeout 20m ./...
	cd testenv/consulapi && $(GO) vet ./... && $(GO) test $(RACE) -count=1 -timeout 5m ./...
	cd testenv/browser && $(GO) vet ./... && $(GO) test -count=1 -timeout 5m ./...

test-short:
	$(GO) test -short -count=1 ./...

# The nemesis of issue #13 for 10 minutes (make test runs it for 60s): faults
# on a seeded schedule against 5 agents in network namespaces (needs root and
# ip netns). It prints its seed; replay one with HERALD_NEMESIS_SEED=N.
HERALD_NEMESIS_DURATION ?= 10m
nemesis:
	HERALD_NEMESIS_DURATION=$(HERALD_NEMESIS_DURATION) $(GO) test -count=1 -run '^TestNemesis$$' -v -timeout 20m ./testenv/

# The abuse suite of issue #9 and the 50,000-instance service at full size
# (make test runs short ones): each attack against a real agent must keep
# its RSS under 512 MiB while DNS and registrations keep answering. Without
# -race, as an agent runs.
abuse:
	HERALD_ABUSE=full $(GO) test -count=1 -run '^(TestAbuse|TestLargeService)$$' -v -timeout 30m ./testenv/

bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./dnsserver/... ./cluster/... ./pushsvc/... ./resolver/...
	$(GO) run ./testenv/cmd/benchall

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzServeDNS -fuzztime 60s ./dnsserver/

# Formatting, import grouping (standard library, others, then this module's
# own packages), a tidy go.mod whose go line is the minimum the dependencies
# allow (.ci/gomod-check), and vet. CI runs it before the tests.
# Generated protobuf code is left as protoc writes it.
lint:
	$(GO) install golang.org/x/tools/cmd/goimports@$(GOIMPORTS_VERSION)
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@out=$$($(GOBIN_DIR)/goimports -local $(MODULE) -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "goimports needed (goimports -local $(MODULE) -w FILE):"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff
	@sh .ci/gomod-check
	$(GO) vet ./...

# Regenerate the protobuf code (committed, so users need no protoc).
# Needs Debian's protobuf-compiler and, for the well-known types, libprotobuf-dev:
# apt-get install protobuf-compiler libprotobuf-dev
proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	for f in $$(git ls-files '*.proto'); do \
	  PATH="$(GOBIN_DIR):$$PATH" protoc -I . -I /usr/include \
	    --go_out=. --go_opt=paths=source_relative \
	    --go-grpc_out=. --go-grpc_opt=paths=source_relative $$f || exit 1; \
	done

clean:
	rm -rf $(BIN)
