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

{{/* Name of an existing cilium.io TracingPolicy CRD that this release did not install (e.g.
Tetragon's), or empty. Found with `lookup`, so empty when rendering without a cluster. */}}
{{- define "vigil.foreignCiliumCRD" -}}
{{- $found := "" -}}
{{- range $name := list "tracingpolicies.cilium.io" "tracingpoliciesnamespaced.cilium.io" -}}
{{- $crd := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" $name -}}
{{- if and $crd (not $found) -}}
{{- $ann := $crd.metadata.annotations | default dict -}}
{{- $release := index $ann "meta.helm.sh/release-name" | default "" -}}
{{- $releaseNs := index $ann "meta.helm.sh/release-namespace" | default "" -}}
{{- if not (and (eq $release $.Release.Name) (eq $releaseNs $.Release.Namespace)) -}}
{{- $found = $name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $found -}}
{{- end -}}

{{/* "true" when the chart installs the cilium.io CRDs (crds.cilium.install), else "false". */}}
{{- define "vigil.ciliumCRDs" -}}
{{- $v := toString .Values.crds.cilium.install -}}
{{- if not (has $v (list "auto" "true" "false")) -}}
{{- fail (printf "crds.cilium.install must be auto, true or false, not %q" $v) -}}
{{- end -}}
{{- if not .Values.crds.install -}}
false
{{- else if eq $v "auto" -}}
{{- ternary "false" "true" (ne (include "vigil.foreignCiliumCRD" .) "") -}}
{{- else if eq $v "true" -}}
{{- with include "vigil.foreignCiliumCRD" . -}}
{{- fail (printf "crds.cilium.install=true, but the cluster already has the CRD %s and this release did not install it (Tetragon's?). Remove it first, or leave crds.cilium.install=auto to use only vigil.dev/v1alpha1" .) -}}
{{- end -}}
true
{{- else -}}
false
{{- end -}}
{{- end -}}

{{/* "true" when the operator reconciles the cilium.io kinds (operator.ciliumPolicies). */}}
{{- define "vigil.ciliumPolicies" -}}
{{- $v := toString .Values.operator.ciliumPolicies -}}
{{- if not (has $v (list "auto" "true" "false")) -}}
{{- fail (printf "operator.ciliumPolicies must be auto, true or false, not %q" $v) -}}
{{- end -}}
{{- if eq $v "auto" -}}
{{- include "vigil.ciliumCRDs" . -}}
{{- else -}}
{{- $v -}}
{{- end -}}
{{- end -}}

{{/* Non-empty when the API server has securityContext.appArmorProfile (Kubernetes 1.30+);
older ones (down to the chart's kubeVersion) take the beta annotation instead. */}}
{{- define "vigil.apparmorField" -}}
{{- if semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version -}}true{{- end -}}
{{- end -}}
