# (Named kube_cluster.mk so that mk/*.mk includes it after mk/kube.mk, whose variables it uses.)
# A real single-node cluster for end-to-end tests (issue 15): the node components built from
# the same Go module as kube-apiserver (tools/kube/apiserver/go.mod), cached under
# $(KUBE_TOOLS)/<name>-<version> like mk/kube.mk does, so a second build is a no-op and a fresh
# clone relinks from the shared Go build cache.

CLUSTER_COMPONENTS := kubelet kube-controller-manager kube-scheduler kube-proxy kubectl
CLUSTER_BINS := $(foreach c,$(CLUSTER_COMPONENTS),$(KUBE_TOOLS)/$(c)-$(KUBE_VERSION))

.PHONY: cluster-tools cluster-deps
cluster-tools: cluster-deps kube-tools $(foreach c,$(CLUSTER_COMPONENTS),$(KUBE_BIN)/$(c)) ## build kubelet, controller-manager, scheduler, kube-proxy, kubectl (cached in .cache/kube-tools)

# What the node runs from Debian: runc under containerd, the CNI plugins (bridge, host-local,
# loopback, portmap in /usr/lib/cni), iptables and conntrack for kube-proxy.
CLUSTER_APT_PACKAGES := runc containernetworking-plugins iptables conntrack
cluster-deps:
	@$(call APT_ENSURE,$(CLUSTER_APT_PACKAGES))

$(KUBE_TOOLS)/%-$(KUBE_VERSION): | tools/kube/apiserver/go.mod tools/kube/apiserver/go.sum
	@mkdir -p $(KUBE_TOOLS)
	cd tools/kube/apiserver && time $(KUBE_GO) build -trimpath -o $@.tmp \
		-ldflags "-s -w $(call KUBE_LDFLAGS_VERSION,component-base) $(call KUBE_LDFLAGS_VERSION,client-go/pkg)" \
		k8s.io/kubernetes/cmd/$*
	mv $@.tmp $@

$(foreach c,$(CLUSTER_COMPONENTS),$(eval $(KUBE_BIN)/$(c): $(KUBE_TOOLS)/$(c)-$(KUBE_VERSION)))

# The rest of the node, also from the Go module proxy (no registry is reachable here):
# containerd v2 (kubelet 1.36 needs a CRI newer than Debian's containerd 1.6), built without
# tracing, systemd and the snapshotters the cluster does not use; CoreDNS with only the plugins
# its Corefile uses (tools/kube/coredns); HAProxy Ingress as the ingress controller (its
# controller binary and templates; HAProxy itself is Debian's, in the infra image), built inside
# its module like its own Makefile does. Traefik v3.7.13 does not build here: the module proxy
# answers 403 for three of its forked dependencies (containous/go-http-auth, ucloud-sdk-go,
# yandex-cloud/go-sdk); HAProxy Ingress v0.15 and haproxytech's controller are not served.
CONTAINERD_VERSION ?= v2.4.2
COREDNS_VERSION ?= v1.15.0
HAPROXY_INGRESS_VERSION ?= v0.14.7
CONTAINERD_TAGS := no_btrfs no_devmapper no_zfs no_tracing no_systemd no_aufs
CONTAINERD_DIR := $(KUBE_TOOLS)/containerd-$(CONTAINERD_VERSION)
COREDNS_BIN := $(KUBE_TOOLS)/coredns-$(COREDNS_VERSION)
HAPROXY_INGRESS_DIR := $(KUBE_TOOLS)/haproxy-ingress-$(HAPROXY_INGRESS_VERSION)

cluster-tools: $(KUBE_BIN)/containerd $(KUBE_BIN)/ctr $(KUBE_BIN)/containerd-shim-runc-v2 \
	$(KUBE_BIN)/coredns $(KUBE_BIN)/haproxy-ingress

$(CONTAINERD_DIR)/.done:
	@mkdir -p $(CONTAINERD_DIR)
	time env GOBIN=$(CONTAINERD_DIR) $(KUBE_GO) install -trimpath -tags "$(CONTAINERD_TAGS)" \
		-ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$(CONTAINERD_VERSION)" \
		github.com/containerd/containerd/v2/cmd/containerd@$(CONTAINERD_VERSION) \
		github.com/containerd/containerd/v2/cmd/ctr@$(CONTAINERD_VERSION) \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$(CONTAINERD_VERSION)
	touch $@

$(COREDNS_BIN): | tools/kube/coredns/go.mod tools/kube/coredns/go.sum tools/kube/coredns/main.go
	@mkdir -p $(KUBE_TOOLS)
	cd tools/kube/coredns && time $(KUBE_GO) build -trimpath -o $@.tmp -ldflags "-s -w" .
	mv $@.tmp $@

# The controller reads its templates from rootfs/etc/templates and copies rootfs/etc/lua into
# /etc/haproxy: both are kept next to the binary (roomgate_tools.cluster mounts the directory
# into the controller's pod, which runs Debian's HAProxy from the infra image).
$(HAPROXY_INGRESS_DIR)/.done:
	@rm -rf $(HAPROXY_INGRESS_DIR) && mkdir -p $(HAPROXY_INGRESS_DIR)
	dir=$$(GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json github.com/jcmoraisjr/haproxy-ingress@$(HAPROXY_INGRESS_VERSION) \
	  | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if d.get("Error") else print(d["Dir"])') \
	  && cp -R "$$dir/rootfs/etc" $(HAPROXY_INGRESS_DIR)/etc && chmod -R u+w $(HAPROXY_INGRESS_DIR)/etc \
	  && cd "$$dir" && time env CGO_ENABLED=0 GOFLAGS=-mod=mod $(KUBE_GO) build -trimpath \
		-o $(HAPROXY_INGRESS_DIR)/controller \
		-ldflags "-s -w -X github.com/jcmoraisjr/haproxy-ingress/pkg/version.RELEASE=$(HAPROXY_INGRESS_VERSION)" \
		./pkg/main.go
	touch $@

$(KUBE_BIN)/containerd $(KUBE_BIN)/ctr $(KUBE_BIN)/containerd-shim-runc-v2: $(CONTAINERD_DIR)/.done
	@mkdir -p $(KUBE_BIN)
	ln -sf $(CONTAINERD_DIR)/$(@F) $@
$(KUBE_BIN)/coredns: $(COREDNS_BIN)
$(KUBE_BIN)/haproxy-ingress: $(HAPROXY_INGRESS_DIR)/.done
	@mkdir -p $(KUBE_BIN)
	ln -sfn $(HAPROXY_INGRESS_DIR) $@

.PHONY: cluster-up cluster-down
# With HAProxy Ingress (its pod runs the infra image); CLUSTER_UP_ARGS= for the bare node.
CLUSTER_UP_ARGS ?= --ingress
cluster-up: cluster-tools images ## start a real single-node cluster with its ingress (state in .cache/cluster; prints KUBECONFIG and the ingress URL)
	$(BIN)/python -m roomgate_tools.cluster up --dir $(CURDIR)/.cache/cluster $(CLUSTER_UP_ARGS)

cluster-down: ## stop what cluster-up started and remove its bridge, mounts and state
	$(BIN)/python -m roomgate_tools.cluster down --dir $(CURDIR)/.cache/cluster
