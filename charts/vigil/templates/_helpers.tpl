{{/* Name of the chart (or nameOverride), DNS-label safe. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name when it contains the chart name, else "<release>-<name>". */}}
{{- define "vigil.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "vigil.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vigil.operatorName" -}}
{{- printf "%s-operator" (include "vigil.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "vigil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include "vigil.selectorLabels" (dict "ctx" . "component" "sensor") */}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vigil.sensor.serviceAccountName" -}}
{{- if .Values.sensor.serviceAccount.create -}}
{{- default (include "vigil.fullname" .) .Values.sensor.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.sensor.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vigil.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "vigil.operatorName" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, the tag defaulting to the chart's appVersion: include "vigil.image" (dict "image" .Values.sensor.image "ctx" .) */}}
{{- define "vigil.image" -}}
{{- printf "%s:%s" (required "image.repository is required" .image.repository) (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* URL the sensors use to reach the operator's policy-distribution service. */}}
{{- define "vigil.operatorAddress" -}}
{{- printf "%s://%s.%s.svc:%v" (ternary "https" "http" .Values.tls.enabled) (include "vigil.operatorName" .) .Release.Namespace .Values.operator.grpcPort -}}
{{- end -}}

{{/* A map as "k1=v1,k2=v2" (keys sorted), for --node-labels. */}}
{{- define "vigil.joinPairs" -}}
{{- range $i, $k := keys . | sortAlpha -}}
{{- if $i }},{{ end }}{{ $k }}={{ index $ $k }}
{{- end -}}
{{- end -}}
