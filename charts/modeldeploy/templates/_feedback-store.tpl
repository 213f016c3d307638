{{/*
The feedback store (feedback.store, docs/feedback.md "The store on a cluster"): a Redis the
chart runs, or the user's own. Its objects have labels of their own, so that nothing that
selects the operator's pods (its Deployment, metrics Service, PodDisruptionBudget) selects
the store's.
*/}}
{{- define "modeldeploy.store.name" -}}{{ include "modeldeploy.name" . }}-feedback-store{{- end -}}
{{- define "modeldeploy.store.port" -}}6379{{- end -}}
{{- define "modeldeploy.store.configDir" -}}/etc/modeldeploy/feedback-store{{- end -}}

{{- define "modeldeploy.store.labels" -}}
{{ include "modeldeploy.store.selectorLabels" . }}
app.kubernetes.io/component: feedback-store
app.kubernetes.io/part-of: modeldeploy
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "modeldeploy.store.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.store.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The store's password: the one in the release's Secret when there is one (so an upgrade
keeps it, and the data and every client with it), else a new random one. Render it once per
template: two calls on a first install give two passwords. */}}
{{- define "modeldeploy.store.password" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "modeldeploy.store.name" .) -}}
{{- $kept := "" -}}
{{- if $secret -}}
{{- $kept = index ($secret.data | default dict) "password" | default "" | b64dec -}}
{{- end -}}
{{- $kept | default (randAlphaNum 40) -}}
{{- end -}}

{{/* redis.conf without the password (requirepass is added in the Secret): the store pod's
checksum annotation is taken of this, so a change of values restarts it and the password,
unknown to `helm template`, does not. Redis 7 reads one directive a line. */}}
{{- define "modeldeploy.store.config" -}}
{{- with .Values.feedback.store -}}
# The modeldeploy feedback store, written by the chart (docs/feedback.md).
port {{ include "modeldeploy.store.port" $ }}
bind * -::*
dir /data
logfile ""
# Every key the serving pods write expires (a prediction WINDOW after its answer, a label
# mark WINDOW after its label). Past maxmemory the keys nearest their expiry are evicted
# first: those predictions had the least time left to be labelled.
maxmemory {{ .maxMemory }}
maxmemory-policy volatile-ttl
save ""
{{- if .persistence.enabled }}
# Persistence: an append-only file, written to disk every second.
appendonly yes
appendfsync everysec
{{- else }}
appendonly no
{{- end }}
{{- end }}
{{- end -}}

{{/* The operator's MODELDEPLOY_FEEDBACK_STORE, one entry of its env list, or nothing. */}}
{{- define "modeldeploy.store.env" -}}
{{- with .Values.feedback.store -}}
{{- if .install }}
- name: MODELDEPLOY_FEEDBACK_STORE
  valueFrom: {secretKeyRef: {name: {{ include "modeldeploy.store.name" $ }}, key: url}}
{{- else if .existingSecret }}
- name: MODELDEPLOY_FEEDBACK_STORE
  valueFrom: {secretKeyRef: {name: {{ .existingSecret }}, key: {{ .existingSecretKey | quote }}}}
{{- else if .url }}
- {name: MODELDEPLOY_FEEDBACK_STORE, value: {{ .url | quote }}}
{{- end }}
{{- end }}
{{- end -}}

{{/* Rules across the feedback.store values; each message names the values. */}}
{{- define "modeldeploy.store.validate" -}}
{{- with .Values.feedback.store -}}
{{- $set := list -}}
{{- if .install }}{{ $set = append $set "feedback.store.install=true" }}{{ end -}}
{{- if .url }}{{ $set = append $set (printf "feedback.store.url=%s" (regexReplaceAll "//[^/]*@" .url "//***@")) }}{{ end -}}
{{- if .existingSecret }}{{ $set = append $set (printf "feedback.store.existingSecret=%s" .existingSecret) }}{{ end -}}
{{- if gt (len $set) 1 -}}
{{- fail (printf "%s: set only one of them. feedback.store.install runs a store in the release; feedback.store.url (no credentials) or feedback.store.existingSecret (a Secret holding the URL with them) point at your own" (join " and " $set)) -}}
{{- end -}}
{{- if regexMatch "^rediss?://[^/]*@" .url -}}
{{- fail (printf "feedback.store.url=%s has credentials in it, and values are kept in the release for anyone to read with helm get values: put the whole URL in a Secret in namespace %s and set feedback.store.existingSecret to its name (and feedback.store.existingSecretKey to its key, default url) instead" (regexReplaceAll "//[^/]*@" .url "//***@") $.Release.Namespace) -}}
{{- end -}}
{{- if and .persistence.enabled (not .install) -}}
{{- fail "feedback.store.persistence.enabled=true needs feedback.store.install=true: persistence is for the store the chart runs (your own store keeps its data its own way)" -}}
{{- end -}}
{{- if .existingSecret -}}
{{- $secret := lookup "v1" "Secret" $.Release.Namespace .existingSecret -}}
{{- if and $secret (not (hasKey ($secret.data | default dict) .existingSecretKey)) -}}
{{- fail (printf "feedback.store.existingSecret=%s has no key %q (its keys: %s): set feedback.store.existingSecretKey to the key that holds the store's URL" .existingSecret .existingSecretKey (keys ($secret.data | default dict) | sortAlpha | join ", ")) -}}
{{- end -}}
{{- if $secret -}}
{{- if not (regexMatch "^rediss?://[^\\s/]+(/[0-9]*)?(\\?\\S*)?$" (index $secret.data .existingSecretKey | b64dec)) -}}
{{- fail (printf "feedback.store.existingSecret=%s: its key %q does not hold a store URL (not shown, it may hold a password); expected redis://[USER:PASSWORD@]HOST[:PORT][/DB], or rediss:// for TLS, e.g. redis://default:PASSWORD@redis.data.svc.cluster.local:6379/0" .existingSecret .existingSecretKey) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
