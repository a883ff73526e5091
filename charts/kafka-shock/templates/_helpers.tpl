{{/*
The chart name, or nameOverride.
*/}}
{{- define "kafka-shock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The resource-name prefix: fullnameOverride, else the release name, plus the chart name unless
the release name already contains it. Truncated so "<fullname>-operator" stays a valid name.
*/}}
{{- define "kafka-shock.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
chart label value: name-version.
*/}}
{{- define "kafka-shock.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select a component's pods; they never change across upgrades.
Call with (dict "root" $ "component" "operator").
*/}}
{{- define "kafka-shock.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kafka-shock.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The standard labels of every object. Call with (dict "root" $ "component" "operator");
component may be empty for objects shared by both parts.
*/}}
{{- define "kafka-shock.labels" -}}
helm.sh/chart: {{ include "kafka-shock.chart" .root }}
app.kubernetes.io/name: {{ include "kafka-shock.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: kafka-shock
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Name of a component's objects: <fullname>-operator, <fullname>-agent.
*/}}
{{- define "kafka-shock.componentName" -}}
{{- printf "%s-%s" (include "kafka-shock.fullname" .root) .component }}
{{- end }}

{{/*
A component's ServiceAccount name. Call with (dict "root" $ "component" "agent").
*/}}
{{- define "kafka-shock.serviceAccountName" -}}
{{- $sa := (index .root.Values .component).serviceAccount }}
{{- if $sa.create }}
{{- default (include "kafka-shock.componentName" .) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/*
A component's image: repository:tag, the tag defaulting to the chart's appVersion.
Call with (dict "root" $ "component" "agent").
*/}}
{{- define "kafka-shock.image" -}}
{{- $image := (index .root.Values .component).image }}
{{- printf "%s:%s" $image.repository ($image.tag | default .root.Chart.AppVersion) }}
{{- end }}

{{/*
The username a component's ServiceAccount authenticates as, as admission sees it:
system:serviceaccount:<namespace>:<name>. Call with (dict "root" $ "component" "agent").
*/}}
{{- define "kafka-shock.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .root.Release.Namespace (include "kafka-shock.serviceAccountName" .) }}
{{- end }}
