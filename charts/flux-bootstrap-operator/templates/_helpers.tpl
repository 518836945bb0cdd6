{{/*
Namespaced objects carry no metadata.namespace (Helm puts them in the release namespace), so that
`helm template` output applies with `kubectl apply -n <namespace>` too; only the tenant RoleBindings name theirs.

Names are fixed, as in deploy/: one operator per cluster (its CRD and ClusterRoles are cluster-wide), and the
operator's own messages name ClusterRole flux-bootstrap-operator-secrets.
*/}}
{{- define "fbo.name" -}}flux-bootstrap-operator{{- end }}

{{- define "fbo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "fbo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flux-bootstrap-operator
{{- end }}

{{/* The pods' selector, as deploy/deployment.yaml's (so an install made with deploy/ can be taken over). */}}
{{- define "fbo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fbo.name" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "fbo.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* The operator's service account as a RoleBinding subject. */}}
{{- define "fbo.subjects" -}}
- kind: ServiceAccount
  name: {{ include "fbo.name" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}
