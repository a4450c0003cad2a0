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
- {{- with $np.externalRedisTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - {port: {{ $np.externalRedisPort }}, protocol: TCP}
    {{- if eq .Values.externalRedis.mode "sentinel" }}
    - {port: 26379, protocol: TCP}
    {{- end }}
{{- end }}
{{- if .Values.otlpEndpoint }}
- {{- with $np.otlp.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - {port: {{ $np.otlp.port }}, protocol: TCP}
{{- end }}
{{- end -}}
{{- define "roomgate.np.metricsIngress" -}}
- from:
    {{- toYaml .Values.networkPolicy.metricsFrom | nindent 4 }}
    {{- if .Values.operator.enabled }}
    - podSelector:
        matchLabels:
          {{- include "roomgate.selectorLabels" (dict "root" . "component" "operator") | nindent 10 }}
    {{- end }}
  ports:
    - {port: metrics, protocol: TCP}
{{- end -}}
