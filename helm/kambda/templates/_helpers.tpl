{{/* Names, labels and shared pod settings. */}}

{{- define "kambda.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name; short enough that "<fullname>-controller-functions" stays a valid name. */}}
{{- define "kambda.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kambda.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "kambda.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kambda.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every object's labels. part-of=kambda is what NATS's NetworkPolicy admits. */}}
{{- define "kambda.labels" -}}
{{ include "kambda.selectorLabels" . }}
app.kubernetes.io/part-of: kambda
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "kambda.chart" .ctx }}
{{- end }}

{{- define "kambda.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "kambda.invokerImage" -}}
{{- $repo := default .Values.image.repository .Values.functions.image.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.functions.image.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{- define "kambda.functionsNamespace" -}}
{{- default .Release.Namespace .Values.functions.namespace }}
{{- end }}

{{- define "kambda.credentialsSecret" -}}
{{- default (printf "%s-credentials" (include "kambda.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "kambda.nats.fullname" -}}
{{- printf "%s-nats" (include "kambda.fullname" .) }}
{{- end }}

{{/* NATS as the platform's pods see it (same namespace). */}}
{{- define "kambda.natsUrl" -}}
{{- if .Values.nats.external.url }}
{{- .Values.nats.external.url }}
{{- else }}
{{- printf "nats://%s:4222" (include "kambda.nats.fullname" .) }}
{{- end }}
{{- end }}

{{/* Servers that keep each of kambda's streams and buckets: as set, else every bundled server. */}}
{{- define "kambda.streamReplicas" -}}
{{- if .Values.nats.streamReplicas }}
{{- .Values.nats.streamReplicas }}
{{- else if .Values.nats.external.url }}
{{- 1 }}
{{- else }}
{{- .Values.nats.replicas }}
{{- end }}
{{- end }}

{{/* NATS as function pods see it (possibly another namespace, so fully qualified). */}}
{{- define "kambda.functionsNatsUrl" -}}
{{- if .Values.nats.external.url }}
{{- .Values.nats.external.url }}
{{- else }}
{{- printf "nats://%s.%s.svc:4222" (include "kambda.nats.fullname" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{- define "kambda.controllerAddress" -}}
{{- printf "%s-controller:50051" (include "kambda.fullname" .) }}
{{- end }}

{{/* Pod-level scheduling and security shared by every pod of the chart. */}}
{{- define "kambda.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Extra environment variables from a map, in a stable order. */}}
{{- define "kambda.extraEnv" -}}
{{- range $key := keys . | sortAlpha }}
- name: {{ $key }}
  value: {{ index $ $key | toString | quote }}
{{- end }}
{{- end }}

{{/*
The partial PodSpec the controller merges into function and pool pods (KAMBDA_K8S_POD_TEMPLATE):
maps merge key by key, containers by name. The controller's own base already mounts /tmp (where the
invoker keeps code and TMPDIR) as an emptyDir, so the template carries no volumes.
*/}}
{{- define "kambda.functionPodTemplate" -}}
{{- $container := dict "name" "invoker" "securityContext" .Values.containerSecurityContext "resources" .Values.functions.resources }}
{{- $spec := dict "securityContext" .Values.podSecurityContext "containers" (list $container) "nodeSelector" .Values.nodeSelector "tolerations" .Values.tolerations "imagePullSecrets" .Values.imagePullSecrets }}
{{- toJson $spec }}
{{- end }}

{{- define "kambda.natsCredentialsSecret" -}}
{{- printf "%s-nats-credentials" (include "kambda.fullname" .) }}
{{- end }}

{{/* The Secret with the gateway's, the controller's and the workers' NATS credentials: the bundled
NATS's, or the one values name for an external NATS; empty: they connect without. */}}
{{- define "kambda.natsComponentSecret" -}}
{{- if not .Values.nats.external.url }}{{ include "kambda.natsCredentialsSecret" . }}{{ else }}{{ .Values.nats.external.credentialsSecret }}{{ end }}
{{- end }}

{{/* The Secret in the functions' namespace with the function pods' NATS credentials (invoker.json). */}}
{{- define "kambda.functionsNatsSecret" -}}
{{- if not .Values.nats.external.url }}{{ include "kambda.natsInvokerSecret" . }}{{ else }}{{ .Values.nats.external.functionsCredentialsSecret }}{{ end }}
{{- end }}

{{- define "kambda.roleKeySecret" -}}
{{- printf "%s-role-key" (include "kambda.fullname" .) }}
{{- end }}

{{- define "kambda.natsInvokerSecret" -}}
{{- printf "%s-nats-invoker" (include "kambda.fullname" .) }}
{{- end }}

{{/* nats-server's authorization block: one user per identity, with its permissions (quoted: a
subject with $ would otherwise read as a variable). */}}
{{- define "kambda.natsAuthorization" -}}
authorization {
  users = [
    {{- range $user, $p := .identities }}
    {{- if not (and $.callout (eq $user "pod")) }}
    {user: {{ $user | quote }}, password: {{ index $.passwords $user | quote }}, permissions: {publish: {allow: [{{ range $i, $s := $p.publish }}{{ if $i }}, {{ end }}{{ $s | quote }}{{ end }}]{{ if $p.deny_publish }}, deny: [{{ range $i, $s := $p.deny_publish }}{{ if $i }}, {{ end }}{{ $s | quote }}{{ end }}]{{ end }}}, subscribe: {allow: [{{ range $i, $s := $p.subscribe }}{{ if $i }}, {{ end }}{{ $s | quote }}{{ end }}]}{{ if $p.allow_responses }}, allow_responses: true{{ end }}}}
    {{- end }}
    {{- end }}
  ]
  {{- with .callout }}
  {{- /* Pods log in through the callout as pod:<id>:<key> with the pod password (kambda/bus/callout.py). */}}
  auth_callout { issuer: {{ . }}, auth_users: [{{ range $i, $u := without (keys $.identities | sortAlpha) "pod" }}{{ if $i }}, {{ end }}{{ $u | quote }}{{ end }}] }
  {{- end }}
}
{{- end }}

{{- define "kambda.controllerTokenSecret" -}}
{{- printf "%s-controller-token" (include "kambda.fullname" .) }}
{{- end }}

{{/* Per-function NATS credentials (kambda/bus/callout.py): on with the bundled NATS unless turned off. */}}
{{- define "kambda.functionCredentials" -}}
{{- if and (not .Values.nats.external.url) .Values.nats.functionCredentials.enabled }}true{{ end }}
{{- end }}

{{/* The Secret with the callout's account key: the one named, else the one the hook makes (callout-key-job.yaml). */}}
{{- define "kambda.calloutSecret" -}}
{{- default (printf "%s-nats-callout" (include "kambda.fullname" .)) .Values.nats.functionCredentials.existingSecret }}
{{- end }}

{{/* The callout's issuer in nats.conf: as given, else read from the Secret through the server's environment. */}}
{{- define "kambda.calloutIssuer" -}}
{{- if .Values.nats.functionCredentials.issuer }}{{ .Values.nats.functionCredentials.issuer | quote }}{{ else }}$KAMBDA_CALLOUT_ISSUER{{ end }}
{{- end }}
