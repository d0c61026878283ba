{{/* Names, labels and the derived settings the templates share. */}}

{{- define "u2serve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name. Kept to 45 characters so the longest derived name ("-dashboard",
"-headless", "-envoy") still fits a 63-character DNS label.
*/}}
{{- define "u2serve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "u2serve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "u2serve.labels" -}}
helm.sh/chart: {{ include "u2serve.chart" . }}
app.kubernetes.io/name: {{ include "u2serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: u2serve
{{- end }}

{{/* The server pods. */}}
{{- define "u2serve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "u2serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{/* The Envoy pods. */}}
{{- define "u2serve.envoy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "u2serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: envoy
{{- end }}

{{- define "u2serve.envoy.fullname" -}}
{{- printf "%s-envoy" (include "u2serve.fullname" .) }}
{{- end }}

{{/* The two headless Services: ready pods only, and every pod (publishNotReadyAddresses). */}}
{{- define "u2serve.headlessName" -}}
{{- printf "%s-headless" (include "u2serve.fullname" .) }}
{{- end }}
{{- define "u2serve.stickyName" -}}
{{- printf "%s-sticky" (include "u2serve.fullname" .) }}
{{- end }}

{{- define "u2serve.image" -}}
{{- $tag := .Values.image.tag | default .Values.variant }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/* --device: the value given, else cpu, or cuda:0 (the one GPU a cuda pod sees). */}}
{{- define "u2serve.device" -}}
{{- if .Values.server.device }}
{{- .Values.server.device }}
{{- else if eq .Values.variant "cuda" }}
{{- "cuda:0" }}
{{- else }}
{{- "cpu" }}
{{- end }}
{{- end }}

{{/*
The pod's grace period. It must cover the preStop sleep and the whole drain, or the kubelet's
SIGKILL cuts live streams off: preStop + drain deadline + 15 s for the exit itself.
*/}}
{{- define "u2serve.terminationGracePeriodSeconds" -}}
{{- $needed := add .Values.preStop.sleepSeconds .Values.server.drainTimeoutSeconds }}
{{- if not .Values.terminationGracePeriodSeconds }}
{{- add $needed 15 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be larger than preStop.sleepSeconds + server.drainTimeoutSeconds (%v): the kubelet would kill the server before its drain ends" .Values.terminationGracePeriodSeconds $needed) }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* server.yaml: the chart's keys over server.config (the schema keeps the two apart). */}}
{{- define "u2serve.serverConfig" -}}
{{- $cfg := deepCopy (.Values.server.config | default (dict)) }}
{{- $_ := set $cfg "model_dir" .Values.models.dirs }}
{{- $_ := set $cfg "bind" "0.0.0.0" }}
{{- $_ := set $cfg "http_port" .Values.ports.http }}
{{- $_ := set $cfg "grpc_port" .Values.ports.grpc }}
{{- $_ := set $cfg "metrics_port" .Values.ports.metrics }}
{{- $_ := set $cfg "drain_timeout_s" .Values.server.drainTimeoutSeconds }}
{{- $_ := set $cfg "max_streams" .Values.server.maxStreams }}
{{- $_ := set $cfg "threads" .Values.server.threads }}
{{- $_ := set $cfg "workers" .Values.server.workers }}
{{- if .Values.envoy.enabled }}
{{- /* Behind Envoy's sequence hash ring, a chunk that reaches a pod not holding its sequence
       (the ring changed) is refused retryably and Envoy walks on to the pod that holds it. */}}
{{- $_ := set $cfg "unknown_sequence_retryable" true }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The check of the startup and readiness probes: GET /v2/health/ready (400, Triton's "not ready", while loading or
draining), or the kubelet's gRPC probe on grpc.health.v1 (NOT_SERVING while draining). The gRPC
probe takes a port number, not a name, and speaks plaintext only.
*/}}
{{- define "u2serve.readyCheck" -}}
{{- if eq .Values.probes.type "grpc" -}}
grpc:
  port: {{ .Values.ports.grpc }}
{{- else -}}
httpGet:
  path: /v2/health/ready
  port: http
  scheme: {{ .Values.probes.scheme }}
{{- end }}
{{- end }}
