# (Named kube_cluster.mk so that mk/*.mk includes it after mk/kube.mk, whose variables it uses.)
# A real single-node cluster for end-to-end tests (issue 15): the node components built from
# the same Go module as kube-apiserver (tools/kube/apiserver/go.mod), cached under
# $(KUBE_TOOLS)/<name>-<version> like mk/kube.mk does, so a second build is a no-op and a fresh
# clone relinks from the shared Go build cache.

CLUSTER_COMPONENTS := kubelet kube-controller-manager kube-scheduler kube-proxy
CLUSTER_BINS := $(foreach c,$(CLUSTER_COMPONENTS),$(KUBE_TOOLS)/$(c)-$(KUBE_VERSION))

.PHONY: cluster-tools
cluster-tools: kube-tools $(foreach c,$(CLUSTER_COMPONENTS),$(KUBE_BIN)/$(c)) ## build kubelet, controller-manager, scheduler, kube-proxy (cached in .cache/kube-tools)

$(KUBE_TOOLS)/%-$(KUBE_VERSION): | tools/kube/apiserver/go.mod tools/kube/apiserver/go.sum
	@mkdir -p $(KUBE_TOOLS)
	cd tools/kube/apiserver && time $(KUBE_GO) build -trimpath -o $@.tmp \
		-ldflags "-s -w $(call KUBE_LDFLAGS_VERSION,component-base) $(call KUBE_LDFLAGS_VERSION,client-go/pkg)" \
		k8s.io/kubernetes/cmd/$*
	mv $@.tmp $@

$(foreach c,$(CLUSTER_COMPONENTS),$(eval $(KUBE_BIN)/$(c): $(KUBE_TOOLS)/$(c)-$(KUBE_VERSION)))
