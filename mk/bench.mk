# Benchmark peers built from the Go module proxy: Centrifugo, the leading open-source real-time
# server, measured side by side with the gateway by `roomgate bench fanout --only centrifugo`.
# Cached under $(BENCH_TOOLS)/<name>-<version> like the Kubernetes tools (mk/kube.mk); the Go
# caches are shared with every clone on the machine.

CENTRIFUGO_VERSION ?= v6.9.1
BENCH_TOOLS ?= $(CURDIR)/.cache/bench-tools
CENTRIFUGO_BIN := $(BENCH_TOOLS)/centrifugo-$(CENTRIFUGO_VERSION)

# tests/tools/test_bench_fanout.py runs the Centrifugo target for real.
TEST_DEPS += bench-tools

.PHONY: bench-tools
bench-tools: $(BENCH_TOOLS)/bin/centrifugo ## build Centrifugo for the side-by-side benchmarks (cached in .cache/bench-tools)

$(CENTRIFUGO_BIN):
	@mkdir -p $(BENCH_TOOLS)/gobin-centrifugo
	GOBIN=$(BENCH_TOOLS)/gobin-centrifugo $(KUBE_GO) install -trimpath \
		-ldflags "-s -w -X github.com/centrifugal/centrifugo/v6/internal/build.Version=$(CENTRIFUGO_VERSION:v%=%)" \
		github.com/centrifugal/centrifugo/v6@$(CENTRIFUGO_VERSION)
	mv $(BENCH_TOOLS)/gobin-centrifugo/centrifugo $@

$(BENCH_TOOLS)/bin/centrifugo: $(CENTRIFUGO_BIN)
	@mkdir -p $(BENCH_TOOLS)/bin
	ln -sf $< $@
