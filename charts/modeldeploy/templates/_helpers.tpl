{{- define "modeldeploy.name" -}}modeldeploy-operator{{- end -}}
{{- define "modeldeploy.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- define "modeldeploy.labels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "modeldeploy.rules" -}}
# ModelDeployments: read them, write only their status.
- apiGroups: ["modeldeploy.dev"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["modeldeploy.dev"]
  resources: ["modeldeployments/status"]
  verbs: ["get", "patch", "update"]
# What a ModelDeployment owns: applied with server-side apply (patch creates); deleted when
# no longer wanted (a finished canary, a per-track Service without an HTTPRoute).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pods are read (init-container termination messages, readiness); a canary pod's readiness
# gate (a condition in its status) is set when the rollout lets it take traffic.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["pods/status"]
  verbs: ["patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}
