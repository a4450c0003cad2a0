# Kubernetes packaging: the tools the chart tests need, chart lint/render, a manual control plane.
#
# Every tool comes from the Go module proxy and is built here (no registry ships a
# kube-apiserver binary).  Binaries are cached under $(KUBE_TOOLS)/<name>-<version>, so a second
# `make kube-tools` does nothing; the Go build and module caches stay in Go's default places
# (~/.cache/go-build, ~/go/pkg/mod), which every clone on this machine shares, so a fresh
# clone relinks in about a minute instead of compiling for twenty.  Builds run niced on at most
# two cores: the machine is shared.

KUBE_VERSION ?= v1.36.3
ETCD_VERSION ?= v3.6.16
HELM_VERSION ?= v3.22.0
KUBECONFORM_VERSION ?= v0.8.0
GATEWAY_API_VERSION ?= v1.4.1
PROMETHEUS_OPERATOR_VERSION ?= v0.85.0
SKAFFOLD_MODULE_VERSION ?= v2.16.1

KUBE_TOOLS ?= $(CURDIR)/.cache/kube-tools
KUBE_BIN := $(KUBE_TOOLS)/bin
KUBE_GO := env GOMAXPROCS=2 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local nice -n 10 go
KUBE_LDFLAGS_VERSION = -X k8s.io/$(1)/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/$(1)/version.gitMajor=$(word 1,$(subst ., ,$(KUBE_VERSION:v%=%))) \
	-X k8s.io/$(1)/version.gitMinor=$(word 2,$(subst ., ,$(KUBE_VERSION:v%=%))) \
	-X k8s.io/$(1)/version.gitTreeState=clean

# What `helm version` reports, and the Kubernetes version `helm template` assumes (Helm's
# release builds set these; without them it claims Kubernetes v1.20).
HELM_LDFLAGS = -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$(word 1,$(subst ., ,$(KUBE_VERSION:v%=%))) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(word 2,$(subst ., ,$(KUBE_VERSION:v%=%)))

APISERVER_BIN := $(KUBE_TOOLS)/kube-apiserver-$(KUBE_VERSION)
ETCD_BIN := $(KUBE_TOOLS)/etcd-$(ETCD_VERSION)
HELM_BIN := $(KUBE_TOOLS)/helm-$(HELM_VERSION)
KUBECONFORM_BIN := $(KUBE_TOOLS)/kubeconform-$(KUBECONFORM_VERSION)
KUBE_SCHEMAS := $(KUBE_TOOLS)/schemas-$(KUBE_VERSION)
SKAFFOLD_SCHEMAS := $(KUBE_TOOLS)/skaffold-schemas-$(SKAFFOLD_MODULE_VERSION)
KUBE_CRDS := $(KUBE_TOOLS)/crds-gateway-api-$(GATEWAY_API_VERSION)-prometheus-operator-$(PROMETHEUS_OPERATOR_VERSION)

# The tests find the tools in .cache/kube-tools/{bin,schemas,crds} (stable links to the
# versioned builds), or in $ROOMGATE_KUBE_TOOLS / $PATH.

TEST_DEPS += kube-tools

.PHONY: kube-tools
kube-tools: $(KUBE_BIN)/kube-apiserver $(KUBE_BIN)/etcd $(KUBE_BIN)/helm $(KUBE_BIN)/kubeconform $(KUBE_SCHEMAS)/.done $(KUBE_CRDS)/.done $(SKAFFOLD_SCHEMAS)/.done ## build helm, kubeconform, kube-apiserver, etcd (cached in .cache/kube-tools)

# Keyed by version (in the file name): go.mod is order-only, a fresh checkout does not relink.
$(APISERVER_BIN): | tools/kube/apiserver/go.mod tools/kube/apiserver/go.sum
	@mkdir -p $(KUBE_TOOLS)
	@echo "building kube-apiserver $(KUBE_VERSION) (cold: ~20 min on 2 cores; see docs/deploy.md)"
	cd tools/kube/apiserver && time $(KUBE_GO) build -trimpath -o $@.tmp \
		-ldflags "-s -w $(call KUBE_LDFLAGS_VERSION,component-base) $(call KUBE_LDFLAGS_VERSION,client-go/pkg)" \
		k8s.io/kubernetes/cmd/kube-apiserver
	mv $@.tmp $@

$(ETCD_BIN): | tools/kube/etcd/go.mod tools/kube/etcd/go.sum
	@mkdir -p $(KUBE_TOOLS)
	cd tools/kube/etcd && time $(KUBE_GO) build -trimpath -o $@.tmp -ldflags "-s -w" go.etcd.io/etcd/server/v3
	mv $@.tmp $@

$(HELM_BIN):
	@mkdir -p $(KUBE_TOOLS)/gobin-helm
	GOBIN=$(KUBE_TOOLS)/gobin-helm $(KUBE_GO) install -trimpath -ldflags "-s -w $(HELM_LDFLAGS)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(KUBE_TOOLS)/gobin-helm/helm $@

$(KUBECONFORM_BIN):
	@mkdir -p $(KUBE_TOOLS)/gobin-kubeconform
	GOBIN=$(KUBE_TOOLS)/gobin-kubeconform $(KUBE_GO) install -trimpath -ldflags "-s -w" github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	mv $(KUBE_TOOLS)/gobin-kubeconform/kubeconform $@

$(KUBE_BIN)/kube-apiserver: $(APISERVER_BIN)
$(KUBE_BIN)/etcd: $(ETCD_BIN)
$(KUBE_BIN)/helm: $(HELM_BIN)
$(KUBE_BIN)/kubeconform: $(KUBECONFORM_BIN)
$(KUBE_BIN)/%:
	@mkdir -p $(KUBE_BIN)
	ln -sf $< $@

# kubeconform's schemas, generated offline from the OpenAPI of the kube-apiserver we built.
$(KUBE_SCHEMAS)/.done: $(APISERVER_BIN) $(ETCD_BIN) tools/kube/openapi2schemas.py $(KUBE_CRDS)/.done $(wildcard charts/roomgate/crds/*.yaml)
	rm -rf $(KUBE_SCHEMAS) && $(BIN)/python tools/kube/openapi2schemas.py --out $(KUBE_SCHEMAS) --crds $(KUBE_CRDS)
	touch $@
	ln -sfn $(KUBE_SCHEMAS) $(KUBE_TOOLS)/schemas

# CRDs of the kinds the chart can render but Kubernetes does not serve: Gateway API (HTTPRoute)
# and prometheus-operator (ServiceMonitor), taken from their Go modules.
$(KUBE_CRDS)/.done: tools/kube/fetch_crds.sh
	GATEWAY_API_VERSION=$(GATEWAY_API_VERSION) PROMETHEUS_OPERATOR_VERSION=$(PROMETHEUS_OPERATOR_VERSION) \
		bash tools/kube/fetch_crds.sh $(KUBE_CRDS)
	touch $@
	ln -sfn $(KUBE_CRDS) $(KUBE_TOOLS)/crds

# Skaffold's JSON schemas (one per apiVersion), from its Go module: tests/kube/test_images.py.
$(SKAFFOLD_SCHEMAS)/.done:
	@mkdir -p $(SKAFFOLD_SCHEMAS)
	dir=$$(GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json github.com/GoogleContainerTools/skaffold/v2@$(SKAFFOLD_MODULE_VERSION) \
	  | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if d.get("Error") else print(d["Dir"])') \
	  && cp "$$dir"/docs-v2/content/en/schemas/*.json $(SKAFFOLD_SCHEMAS)/ && chmod u+w $(SKAFFOLD_SCHEMAS)/*.json
	touch $@
	ln -sfn $(SKAFFOLD_SCHEMAS) $(KUBE_TOOLS)/skaffold-schemas

.PHONY: kube-gomod
kube-gomod: ## regenerate tools/kube/*/go.mod for KUBE_VERSION / ETCD_VERSION
	$(BIN)/python tools/kube/gen_gomod.py apiserver $(KUBE_VERSION)
	cd tools/kube/apiserver && rm -f go.sum && for c in kube-apiserver $(CLUSTER_COMPONENTS); do \
	  $(KUBE_GO) get -tool k8s.io/kubernetes/cmd/$$c@$(KUBE_VERSION) || exit 1; done
	$(BIN)/python tools/kube/gen_gomod.py etcd $(ETCD_VERSION)
	cd tools/kube/etcd && rm -f go.sum && $(KUBE_GO) get -tool go.etcd.io/etcd/server/v3@$(ETCD_VERSION)

CHART := charts/roomgate
CHART_VALUES := $(wildcard tests/kube/values/*.yaml) $(CHART)/values-production.yaml

.PHONY: chart-lint
chart-lint: kube-tools ## helm lint --strict, defaults and every values file in tests/kube/values
	$(KUBE_BIN)/helm lint --strict $(CHART)
	@for v in $(CHART_VALUES); do echo "helm lint --strict -f $$v"; $(KUBE_BIN)/helm lint --strict $(CHART) -f $$v || exit 1; done

.PHONY: chart-render
chart-render: kube-tools ## helm template for every values file, validated by kubeconform -strict (offline schemas)
	@for v in "" $(CHART_VALUES); do \
	  echo "== helm template $${v:-(defaults)}"; \
	  $(KUBE_BIN)/helm template rg $(CHART) --namespace roomgate $${v:+-f $$v} \
	  | $(KUBE_BIN)/kubeconform -strict -summary -schema-location '$(KUBE_SCHEMAS)/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json' || exit 1; \
	done

.PHONY: kube-up
kube-up: kube-tools ## start etcd + kube-apiserver on 127.0.0.1 (state in .cache/kube-up; prints KUBECONFIG)
	$(BIN)/python -m roomgate_tools.controlplane up --dir $(CURDIR)/.cache/kube-up

.PHONY: kube-down
kube-down: ## stop what kube-up started
	$(BIN)/python -m roomgate_tools.controlplane down --dir $(CURDIR)/.cache/kube-up
