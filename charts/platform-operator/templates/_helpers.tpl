{{/*
Names and labels shared by the templates.
*/}}

{{- define "platform-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's object name. A release named like the chart (the usual `helm install
platform-operator ...`) gets plain `platform-operator`, the name the plain manifests and the
test environment use.
*/}}
{{- define "platform-operator.fullname" -}}
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

{{- define "platform-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable for the lifetime of a release (a Deployment's selector is immutable).
*/}}
{{- define "platform-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "platform-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "platform-operator.labels" -}}
helm.sh/chart: {{ include "platform-operator.chart" . }}
{{ include "platform-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: platform-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels for the stack's Platform and PlatformGroup objects: which release owns them, without
the operator's name and component, which would make selectors for the operator's pods match
them too.
*/}}
{{- define "platform-operator.stackLabels" -}}
helm.sh/chart: {{ include "platform-operator.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: platform-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "platform-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "platform-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "platform-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The namespace the stack's objects go to: stack.namespace, else the release's.
*/}}
{{- define "platform-operator.stackNamespace" -}}
{{- .Values.stack.namespace | default .Release.Namespace }}
{{- end }}

{{/*
The rules the operator needs in the namespaces it watches. Used by the ClusterRole (all
namespaces) and by the Role (watchNamespace). Each rule names the verbs the operator uses and
nothing more (see src/controller/run.rs for the watched kinds, src/controller/apply.rs for the
writes, src/api/ for the REST API); tests/real_rbac.rs checks them against a real API server.
*/}}
{{- define "platform-operator.namespacedRules" -}}
# The custom resources it reconciles: watched through reflectors (list, watch; never get),
# the finalizer changed with a guarded JSON patch and restarts passed on with a merge patch.
- apiGroups: ["pmp.dev"]
  resources: ["platforms"]
  verbs: ["list", "watch", "patch"]
# Groups are watched by the controller; the REST API starts and stops a group by patching
# its spec.desiredState.
- apiGroups: ["pmp.dev"]
  resources: ["platformgroups"]
  verbs: ["list", "watch", "patch"]
# Both statuses are written by server-side apply on the status subresource.
- apiGroups: ["pmp.dev"]
  resources: ["platforms/status", "platformgroups/status"]
  verbs: ["patch"]
# Each Platform is realised as one Deployment and its config as a ConfigMap, both written by
# server-side apply: patch, and create, which the API server checks too when an apply
# creates the object. They are deleted by the garbage collector through their
# ownerReference (no delete). The ownerReferences do not set blockOwnerDeletion, so
# platforms/finalizers (which OwnerReferencesPermissionEnforcement would require for it) is
# not granted.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "watch", "create", "patch"]
# Pods are only observed (readiness, restarts, waiting reasons).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Supervision: the Warning Events on the platforms' pods (Unhealthy, BackOff, OOMKilling,
# FailedScheduling, ...), watched with a field selector; never written.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list", "watch"]
# Audit trail and reconcile errors: kube-runtime's Recorder creates events.k8s.io/v1 Events
# and patches a repeated one's series. Core (v1) Events are not written.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Alerts: the Secret an alert channel names (its webhook URL or address), read by name when an
# alert is sent and cached briefly; never listed or watched, never written.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Resource usage of the platforms' pods (metrics-server), listed every 30 s by label.
- apiGroups: ["metrics.k8s.io"]
  resources: ["pods"]
  verbs: ["list"]
{{- end }}

{{/*
Cluster-scoped rules, which a Role cannot grant: the REST API (--api-auth kubernetes)
authenticates each caller's bearer token with a TokenReview and authorizes the request with a
SubjectAccessReview.
*/}}
{{- define "platform-operator.delegatedAuthRules" -}}
# The REST API authenticates its callers' bearer tokens (TokenReview) and asks the API server
# whether the caller may do what it requests (SubjectAccessReview).
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- end }}
