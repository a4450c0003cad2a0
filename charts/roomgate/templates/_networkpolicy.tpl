{{- /* Egress every Roomgate service needs: DNS, Redis, and the OTLP collector when set. */ -}}
{{- define "roomgate.np.baseEgress" -}}
{{- $root := . -}}
{{- $np := .Values.networkPolicy -}}
- to:
    {{- toYaml $np.dnsTo | nindent 4 }}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- if .Values.redis.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "roomgate.selectorLabels" (dict "root" $root "component" "redis") | nindent 10 }}
  ports:
    - {port: {{ .Values.redis.port }}, protocol: TCP}
{{- else }}
- ports:
    - {port: {{ $np.externalRedisPort }}, protocol: TCP}
    {{- if eq .Values.externalRedis.mode "sentinel" }}
    - {port: 26379, protocol: TCP}
    {{- end }}
  {{- with $np.externalRedisTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- if .Values.otlpEndpoint }}
- ports:
    - {port: {{ $np.otlp.port }}, protocol: TCP}
  {{- with $np.otlp.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}
{{- define "roomgate.np.metricsIngress" -}}
{{- $root := .root -}}
- from:
    {{- toYaml $root.Values.networkPolicy.metricsFrom | nindent 4 }}
    {{- if $root.Values.operator.enabled }}
    - podSelector:
        matchLabels:
          {{- include "roomgate.selectorLabels" (dict "root" $root "component" "operator") | nindent 10 }}
    {{- end }}
  ports:
    - {port: {{ .port | default "metrics" }}, protocol: TCP}
{{- end -}}
