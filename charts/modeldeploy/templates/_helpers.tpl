{{- define "modeldeploy.name" -}}modeldeploy-operator{{- end -}}
{{- define "modeldeploy.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- define "modeldeploy.leaseName" -}}modeldeploy-operator-leader{{- end -}}

{{/* The labels Kubernetes recommends, on every object the chart renders. */}}
{{- define "modeldeploy.labels" -}}
{{ include "modeldeploy.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: modeldeploy
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* What the Deployment, the PodDisruptionBudget and the monitors select (never changes). */}}
{{- define "modeldeploy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Rules across values that a JSON schema cannot say clearly; each names the values. */}}
{{- define "modeldeploy.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) -}}
{{- fail (printf "replicas=%d needs leaderElection.enabled=true: without the Lease every pod would reconcile the same ModelDeployments at once" (int .Values.replicas)) -}}
{{- end -}}
{{- if and .Values.pdb.enabled (lt (int .Values.replicas) 2) -}}
{{- fail (printf "pdb.enabled=true needs replicas >= 2 (got %d): with one pod the budget would block every node drain" (int .Values.replicas)) -}}
{{- end -}}
{{- if and .Values.pdb.enabled (ge (int .Values.pdb.minAvailable) (int .Values.replicas)) -}}
{{- fail (printf "pdb.minAvailable=%d must be less than replicas=%d, or no pod could ever be evicted" (int .Values.pdb.minAvailable) (int .Values.replicas)) -}}
{{- end -}}
{{- with .Values.leaderElection -}}
{{- if not (lt (int .renewDeadlineSeconds) (int .leaseDurationSeconds)) -}}
{{- fail (printf "leaderElection.renewDeadlineSeconds=%d must be less than leaderElection.leaseDurationSeconds=%d, or a standby could take over while the leader still works" (int .renewDeadlineSeconds) (int .leaseDurationSeconds)) -}}
{{- end -}}
{{- if not (lt (int .retryPeriodSeconds) (int .renewDeadlineSeconds)) -}}
{{- fail (printf "leaderElection.retryPeriodSeconds=%d must be less than leaderElection.renewDeadlineSeconds=%d, or the leader could not renew in time" (int .retryPeriodSeconds) (int .renewDeadlineSeconds)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled=true needs metrics.service.enabled=true: a ServiceMonitor finds pods through the Service (or use metrics.podMonitor)" -}}
{{- end -}}
{{- include "modeldeploy.store.validate" . -}}
{{- end -}}

{{- define "modeldeploy.rules" -}}
# ModelDeployments: read them, write their status; patch is for one field only, spec.model,
# set to a verified retraining candidate when spec.drift.retraining.adopt is Auto (the
# field manager modeldeploy-adopt; docs/retraining.md).
- apiGroups: ["modeldeploy.dev"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch", "patch"]
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
# A user's Gateway API HTTPRoute named by spec.rollout.traffic.httpRoute: watched, and its
# rules' backendRefs patched (server-side apply) with the canary weights; never created or
# deleted. Harmless without the Gateway API installed.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "patch"]
# The response to drift (spec.drift.retraining): a retraining Job per drift episode, and the
# ConfigMap that carries its drift report; created once, watched for the Job's outcome,
# never updated or deleted (the ModelDeployment owns them). The shadow step
# (spec.rollout.shadow): the ConfigMap NAME-shadow the stable pods read, applied (patch)
# and deleted when spec.rollout.shadow goes away.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# spec.drift.webhook.signingSecret: the one Secret key named is read when a report is sent
# (get only: Secrets are never listed or watched).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}
