{{/* Names, labels and the pieces every Roomgate workload shares. */}}

{{- define "roomgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "roomgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: (dict "root" $ "component" "gateway") */}}
{{- define "roomgate.componentName" -}}
{{- printf "%s-%s" (include "roomgate.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "roomgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "roomgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: roomgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "roomgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "roomgate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "roomgate.componentLabels" -}}
{{ include "roomgate.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "roomgate.image" -}}
{{- if .values.image.reference -}}
{{- .values.image.reference -}}
{{- else -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Secret with the generated credentials (JWT HS256 secret, admin secrets, Redis password). */}}
{{- define "roomgate.generatedSecretName" -}}
{{- printf "%s-credentials" (include "roomgate.fullname" .) -}}
{{- end -}}

{{/* A generated value kept across upgrades: (dict "root" $ "key" "x" "length" 48) */}}
{{- define "roomgate.generated" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "roomgate.generatedSecretName" .root) -}}
{{- if and $existing (hasKey $existing.data .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- randAlphaNum (int .length) | b64enc -}}
{{- end -}}
{{- end -}}

{{- define "roomgate.authSecretName" -}}
{{- default (include "roomgate.generatedSecretName" .) .Values.auth.jwt.existingSecret -}}
{{- end -}}

{{- define "roomgate.roomauthzSecretName" -}}
{{- default (include "roomgate.generatedSecretName" .) .Values.roomauthz.existingSecret -}}
{{- end -}}

{{- define "roomgate.roomauthzSecretKey" -}}
{{- if .Values.roomauthz.existingSecret -}}admin-secret{{- else -}}roomauthz-admin-secret{{- end -}}
{{- end -}}

{{- define "roomgate.redisSecretName" -}}
{{- if .Values.redis.enabled -}}
{{- default (include "roomgate.generatedSecretName" .) .Values.redis.auth.existingSecret -}}
{{- else -}}
{{- .Values.externalRedis.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "roomgate.redisHasPassword" -}}
{{- if .Values.redis.enabled -}}
{{- if .Values.redis.auth.enabled -}}true{{- end -}}
{{- else if .Values.externalRedis.existingSecret -}}true{{- end -}}
{{- end -}}

{{/*
ROOMGATE_REDIS_URL. The password comes from a Secret into ROOMGATE_REDIS_PASSWORD and is
spliced into the URL by Kubernetes' $(VAR) expansion (it must be URL-safe: generated ones are).
Sentinel: redis+sentinel://[:pw@]host1:26379,host2:26379/<master>/<db>; cluster:
redis+cluster://[:pw@]seed:6379, the first of the addresses (see docs/deploy.md).
*/}}
{{- define "roomgate.redisURL" -}}
{{- $auth := "" -}}
{{- if include "roomgate.redisHasPassword" . -}}
{{- $user := ternary "" .Values.externalRedis.username .Values.redis.enabled -}}
{{- $auth = printf "%s:$(ROOMGATE_REDIS_PASSWORD)@" $user -}}
{{- end -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s%s-redis:%d/0" $auth (include "roomgate.fullname" .) (int .Values.redis.port) -}}
{{- else -}}
{{- $r := .Values.externalRedis -}}
{{- if eq $r.mode "standalone" -}}
{{- printf "%s://%s%s/%d" (ternary "rediss" "redis" $r.tls) $auth $r.addresses (int $r.database) -}}
{{- else if eq $r.mode "sentinel" -}}
{{- printf "%s://%s%s/%s/%d" (ternary "rediss+sentinel" "redis+sentinel" $r.tls) $auth $r.addresses $r.sentinelMasterName (int $r.database) -}}
{{- else -}}
{{- /* roomgate_common.redis_adapter: any one node names the cluster. */ -}}
{{- printf "%s://%s%s" (ternary "rediss+cluster" "redis+cluster" $r.tls) $auth (splitList "," $r.addresses | first | trim) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Environment every service has: (dict "root" $ "values" .Values.x "grace" N) */}}
{{- define "roomgate.commonEnv" -}}
{{- $root := .root -}}
{{- if include "roomgate.redisHasPassword" $root }}
- name: ROOMGATE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "roomgate.redisSecretName" $root }}
      key: {{ ternary "redis-password" $root.Values.externalRedis.passwordKey $root.Values.redis.enabled }}
{{- end }}
- name: ROOMGATE_REDIS_URL
  value: {{ include "roomgate.redisURL" $root | quote }}
- name: ROOMGATE_LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
- name: ROOMGATE_METRICS_LISTEN
  value: {{ printf "0.0.0.0:%d" (int $root.Values.metricsPort) | quote }}
- name: ROOMGATE_OTLP_ENDPOINT
  value: {{ $root.Values.otlpEndpoint | quote }}
- name: ROOMGATE_SHUTDOWN_GRACE
  value: {{ .grace | quote }}
- name: ROOMGATE_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: ROOMGATE_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
# The pod a span comes from, in the trace backend (docs/observability.md).
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "service.instance.id=$(ROOMGATE_POD_NAME),k8s.pod.name=$(ROOMGATE_POD_NAME),k8s.namespace.name=$(ROOMGATE_NAMESPACE),service.namespace={{ $root.Release.Name }}"
{{- range $name, $value := .values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* In-cluster gRPC target of a headless Service: dns:/// makes grpc resolve every pod. */}}
{{- define "roomgate.grpcTarget" -}}
{{- $v := index .root.Values .component -}}
{{- printf "dns:///%s.%s.svc:%d" (include "roomgate.componentName" .) .root.Release.Namespace (int $v.port) -}}
{{- end -}}

{{- define "roomgate.podScheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "roomgate.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Does anything other than a fixed replica count scale the gateway? */}}
{{- define "roomgate.gatewayAutoscaled" -}}
{{- if or .Values.gateway.autoscaling.enabled (and .Values.operator.enabled .Values.operator.manageScaling) -}}true{{- end -}}
{{- end -}}
