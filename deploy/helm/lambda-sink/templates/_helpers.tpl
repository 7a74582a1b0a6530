{{/*
The chart name, overridable with nameOverride. Truncated to 63 characters (DNS label limit).
*/}}
{{- define "lambda-sink.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the objects: "<release>-<chart>", or the release name when it already contains
the chart name; overridable with fullnameOverride.
*/}}
{{- define "lambda-sink.fullname" -}}
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

{{/*
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "lambda-sink.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "lambda-sink.labels" -}}
helm.sh/chart: {{ include "lambda-sink.chart" . }}
{{ include "lambda-sink.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lambda-sink
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels selecting the operator pod; never change them on upgrade (Deployment selectors are immutable).
*/}}
{{- define "lambda-sink.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lambda-sink.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The name of the ServiceAccount the operator runs as.
*/}}
{{- define "lambda-sink.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lambda-sink.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
"repository:tag" or "repository@digest"; the tag defaults to the chart's appVersion.
Call with (dict "image" .Values.image "context" $).
*/}}
{{- define "lambda-sink.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .context.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/*
The namespaces the operator serves when not cluster-wide: watchNamespaces, or the release namespace.
Rendered as a JSON list (use with fromJsonArray). Fails when watchAllNamespaces is combined with a list.
*/}}
{{- define "lambda-sink.watchedNamespaces" -}}
{{- if and .Values.watchAllNamespaces .Values.watchNamespaces }}
{{- fail "watchAllNamespaces: true cannot be combined with a non-empty watchNamespaces; set one of them" }}
{{- end }}
{{- if .Values.watchAllNamespaces }}
{{- list | toJson }}
{{- else if .Values.watchNamespaces }}
{{- .Values.watchNamespaces | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs on namespaced resources: exactly the calls listed in
operator/lambdasink_operator/RBAC.md. Used by the per-namespace Roles and, in cluster-wide mode, by
the ClusterRole.
*/}}
{{- define "lambda-sink.operatorRules" -}}
# The LambdaSinks: kopf watches and indexes them and keeps its progress annotations.
- apiGroups: ["lambdasink.dev"]
  resources: ["lambdasinks"]
  verbs: ["list", "watch", "patch"]
# Conditions, observedGeneration, replicas and selector (merge patch of the status subresource).
- apiGroups: ["lambdasink.dev"]
  resources: ["lambdasinks/status"]
  verbs: ["patch"]
# spec.replicas through the scale subresource, only for sinks with spec.autoscaling.
- apiGroups: ["lambdasink.dev"]
  resources: ["lambdasinks/scale"]
  verbs: ["patch"]
# Only where OwnerReferencesPermissionEnforcement is on: the worker Deployment's ownerReference
# has blockOwnerDeletion, which needs update on the owner's finalizers.
- apiGroups: ["lambdasink.dev"]
  resources: ["lambdasinks/finalizers"]
  verbs: ["update"]
# The worker Deployments: indexed (only ours, by label), read by name when not indexed, created
# and repaired by server-side apply. Never deleted: the garbage collector follows ownerReferences.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Worker pods (only ours, by label): crashes and termination messages (WorkerFailing condition).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Secrets: indexed as a digest per key (never a value); get by name only for the credential
# plugin's parameter and, with --secret-selector, a referenced Secret outside the selector.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# Events about reconciliation (the operator's and kopf's).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
