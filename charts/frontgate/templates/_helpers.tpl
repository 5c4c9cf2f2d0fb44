{{/* The chart's name, truncated to a label's 63 characters. */}}
{{- define "frontgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' base name: <release>-<chart>, or the release name alone when it holds the chart's. */}}
{{- define "frontgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* <fullname>-<suffix>, kept within 63 characters. */}}
{{- define "frontgate.suffixed" -}}
{{- $base := include "frontgate.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base .suffix }}
{{- end }}

{{- define "frontgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "frontgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "frontgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "frontgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: frontgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "frontgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "frontgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "frontgate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Mount paths: one place, used by the Deployment and by the config the chart writes. */}}
{{- define "frontgate.configDir" -}}/etc/frontgate{{- end }}
{{- define "frontgate.tlsDir" -}}/etc/frontgate/tls{{- end }}
{{- define "frontgate.secretDir" -}}/etc/frontgate/secret{{- end }}

{{/* true when some listener serves TLS */}}
{{- define "frontgate.anyTLS" -}}
{{- range .Values.listeners }}{{ if .tls }}true{{ end }}{{ end }}
{{- end }}

{{- define "frontgate.tlsSecretName" -}}
{{- if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else }}
{{- include "frontgate.suffixed" (dict "root" . "suffix" "tls") }}
{{- end }}
{{- end }}

{{- define "frontgate.filesSecretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else }}
{{- include "frontgate.suffixed" (dict "root" . "suffix" "files") }}
{{- end }}
{{- end }}

{{/* the chart makes the files Secret: no existingSecret and at least one file */}}
{{- define "frontgate.ownFilesSecret" -}}
{{- if and (not .Values.secret.existingSecret) .Values.secret.files }}true{{ end }}
{{- end }}

{{/* the chart makes the TLS Secret */}}
{{- define "frontgate.ownTLSSecret" -}}
{{- if and (include "frontgate.anyTLS" .) (not .Values.tls.existingSecret) }}true{{ end }}
{{- end }}

{{/*
frontgate.yaml: .Values.config as it is, with listeners, admin and reload written from the
chart's values. Refuses what would make the pod unable to start or unreachable by its probes.
*/}}
{{- define "frontgate.config" -}}
{{- $cfg := deepCopy (default (dict) .Values.config) }}
{{- range $k := list "listeners" "admin" "reload" }}
{{- if hasKey $cfg $k }}
{{- fail (printf "config.%s is written by the chart: set it through the chart's values (listeners, metrics.port, reload.watchFiles), not under config" $k) }}
{{- end }}
{{- end }}
{{- if not .Values.listeners }}
{{- fail "listeners: at least one proxy listener is needed" }}
{{- end }}
{{- $tlsDir := include "frontgate.tlsDir" . }}
{{- $listeners := list }}
{{- $ports := dict }}
{{- range .Values.listeners }}
{{- if hasKey $ports (toString .port) }}
{{- fail (printf "listeners: port %v is used twice" .port) }}
{{- end }}
{{- if eq (int .port) (int $.Values.metrics.port) }}
{{- fail (printf "listeners: port %v is metrics.port, the admin listener's" .port) }}
{{- end }}
{{- $_ := set $ports (toString .port) true }}
{{- $l := dict "address" (printf "0.0.0.0:%d" (int .port)) }}
{{- if .tls }}
{{- if not (or $.Values.tls.existingSecret (and $.Values.tls.cert $.Values.tls.key)) }}
{{- fail (printf "listeners[%s].tls: set tls.existingSecret (a kubernetes.io/tls Secret) or tls.cert and tls.key" .name) }}
{{- end }}
{{- $t := dict "certFile" (printf "%s/tls.crt" $tlsDir) "keyFile" (printf "%s/tls.key" $tlsDir) }}
{{- if .clientCA }}
{{- $_ := set $t "clientCAFile" (printf "%s/ca.crt" $tlsDir) }}
{{- end }}
{{- $_ := set $l "tls" $t }}
{{- else if .clientCA }}
{{- fail (printf "listeners[%s].clientCA needs tls: true" .name) }}
{{- end }}
{{- if hasKey . "http2" }}
{{- $_ := set $l "http2" .http2 }}
{{- end }}
{{- $listeners = append $listeners $l }}
{{- end }}
{{- $_ := set $cfg "listeners" $listeners }}
{{- $_ := set $cfg "admin" (dict "address" (printf "0.0.0.0:%d" (int .Values.metrics.port))) }}
{{- if .Values.reload.watchFiles }}
{{- $_ := set $cfg "reload" (dict "watchFiles" true) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}
