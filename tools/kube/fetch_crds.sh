#!/usr/bin/env bash
# Copy the CRDs of the kinds the chart may render but Kubernetes does not serve itself out of
# their Go modules (fetched by `go mod download` from the Go module proxy; nothing is committed):
#   HTTPRoute   sigs.k8s.io/gateway-api, experimental channel (sessionPersistence is experimental)
#   ServiceMonitor, PrometheusRule  github.com/prometheus-operator/prometheus-operator
# Usage: GATEWAY_API_VERSION=v1.4.1 PROMETHEUS_OPERATOR_VERSION=v0.85.0 fetch_crds.sh OUT_DIR
set -euo pipefail
out=${1:?usage: fetch_crds.sh OUT_DIR}
mkdir -p "$out"
moddir() { GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if d.get("Error") else print(d["Dir"])'; }
gw=$(moddir "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION:?}")
cp "$gw/config/crd/experimental/gateway.networking.k8s.io_httproutes.yaml" "$out/"
po=$(moddir "github.com/prometheus-operator/prometheus-operator@${PROMETHEUS_OPERATOR_VERSION:?}")
cp "$po/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
   "$po/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" "$out/"
chmod u+w "$out"/*.yaml
ls "$out"
