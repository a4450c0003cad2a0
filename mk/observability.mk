# Observability: the trace backend (Jaeger) and Prometheus (+ promtool) that `make dev` and the
# tests run for real (docs/observability.md).
#
# Built from the Go module proxy like the Kubernetes tools (mk/kube.mk): versioned binaries
# under $(OBS_TOOLS), stable links in $(OBS_TOOLS)/bin, niced, two cores, Go's shared build
# and module caches. Jaeger's go.mod carries a replace directive, so `go install` refuses it:
# tools/obs/jaeger is the wrapper module that builds it (the same replace).
# Cold compiles on the shared 2-core machine (docs/observability.md#build-times): jaeger ~10 min,
# prometheus + promtool ~9 min; relinking with a warm cache: under a minute.

JAEGER_VERSION ?= v1.75.0
PROMETHEUS_VERSION ?= v0.316.0

OBS_TOOLS ?= $(CURDIR)/.cache/obs-tools
OBS_BIN := $(OBS_TOOLS)/bin
OBS_GO := env GOMAXPROCS=2 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local nice -n 10 go

JAEGER_BIN := $(OBS_TOOLS)/jaeger-$(JAEGER_VERSION)
PROMETHEUS_BIN := $(OBS_TOOLS)/prometheus-$(PROMETHEUS_VERSION)-minsd
PROMTOOL_BIN := $(OBS_TOOLS)/promtool-$(PROMETHEUS_VERSION)-minsd

TEST_DEPS += obs-tools

.PHONY: obs-tools
obs-tools: $(OBS_BIN)/jaeger $(OBS_BIN)/prometheus $(OBS_BIN)/promtool ## build jaeger, prometheus, promtool (cached in .cache/obs-tools)

$(JAEGER_BIN): | tools/obs/jaeger/go.mod tools/obs/jaeger/go.sum
	@mkdir -p $(OBS_TOOLS)
	@echo "building jaeger $(JAEGER_VERSION) (cold: ~10 min on 2 cores; see docs/observability.md)"
	cd tools/obs/jaeger && time $(OBS_GO) build -trimpath -ldflags "-s -w" -o $@.tmp \
		github.com/jaegertracing/jaeger/cmd/jaeger
	mv $@.tmp $@

# Without the `builtinassets` tag: no web UI (the tests and `make dev` use the HTTP API).
# `remove_all_sd`: Prometheus's documented build without the cloud service discoveries
# (AWS, Azure, GCE, Kubernetes... SDKs): static and file targets are all the local stack
# needs, and the cold build is much shorter.
PROMETHEUS_TAGS ?= remove_all_sd
$(PROMETHEUS_BIN):
	@mkdir -p $(OBS_TOOLS)/gobin-prometheus
	GOBIN=$(OBS_TOOLS)/gobin-prometheus $(OBS_GO) install -trimpath -tags "$(PROMETHEUS_TAGS)" \
		-ldflags "-s -w" github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS_VERSION)
	mv $(OBS_TOOLS)/gobin-prometheus/prometheus $@

$(PROMTOOL_BIN):
	@mkdir -p $(OBS_TOOLS)/gobin-promtool
	GOBIN=$(OBS_TOOLS)/gobin-promtool $(OBS_GO) install -trimpath -tags "$(PROMETHEUS_TAGS)" \
		-ldflags "-s -w" github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_VERSION)
	mv $(OBS_TOOLS)/gobin-promtool/promtool $@

$(OBS_BIN)/jaeger: $(JAEGER_BIN)
$(OBS_BIN)/prometheus: $(PROMETHEUS_BIN)
$(OBS_BIN)/promtool: $(PROMTOOL_BIN)
$(OBS_BIN)/%:
	@mkdir -p $(OBS_BIN)
	ln -sf ../$(notdir $<) $@

# promtool's unit tests of the alerting rules (also run by tests/observability).
.PHONY: alerts-test
alerts-test: $(OBS_BIN)/promtool ## promtool check + test rules on charts/roomgate/files/alerts.yaml
	$(OBS_BIN)/promtool check rules charts/roomgate/files/alerts.yaml
	cd tests/observability && $(OBS_BIN)/promtool test rules alerts_test.yaml

# `make dev` runs Jaeger and Prometheus with the stack (roomgate dev --no-observability: not).
dev: obs-tools
