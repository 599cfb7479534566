{{/* The release's name prefix for every object. */}}
{{- define "nmos-auth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "nmos-auth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nmos-auth
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "keys"). */}}
{{- define "nmos-auth.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
The services: their values key, and which components call their gRPC API (for the
NetworkPolicies; the services themselves refuse other callers by certificate as well). Keys and
client-registry are also called by the services that check administrators' tokens.
*/}}
{{- define "nmos-auth.components" -}}
keys: {values: keys, callers: [token-issuer, gateway, identity, client-registry]}
identity: {values: identity, callers: [gateway, token-issuer]}
client-registry: {values: clientRegistry, callers: [gateway, token-issuer, keys, identity]}
token-issuer: {values: tokenIssuer, callers: [gateway]}
gateway: {values: gateway, callers: []}
{{- end -}}

{{- define "nmos-auth.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "nmos-auth.databaseSecret" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecret }}{{- else -}}{{ include "nmos-auth.fullname" . }}-database{{- end -}}
{{- end -}}

{{- define "nmos-auth.databaseSecretKey" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecretKey }}{{- else -}}url{{- end -}}
{{- end -}}

{{- define "nmos-auth.kekSecret" -}}
{{- if .Values.keyEncryptionKey.existingSecret -}}{{ .Values.keyEncryptionKey.existingSecret }}{{- else -}}{{ include "nmos-auth.fullname" . }}-key-encryption-key{{- end -}}
{{- end -}}

{{- define "nmos-auth.kekSecretKey" -}}
{{- if .Values.keyEncryptionKey.existingSecret -}}{{ .Values.keyEncryptionKey.existingSecretKey }}{{- else -}}key{{- end -}}
{{- end -}}

{{- define "nmos-auth.cookieSecret" -}}
{{- if .Values.cookieKey.existingSecret -}}{{ .Values.cookieKey.existingSecret }}{{- else -}}{{ include "nmos-auth.fullname" . }}-cookie-key{{- end -}}
{{- end -}}

{{- define "nmos-auth.cookieSecretKey" -}}
{{- if .Values.cookieKey.existingSecret -}}{{ .Values.cookieKey.existingSecretKey }}{{- else -}}key{{- end -}}
{{- end -}}

{{/* The Secret with a component's tls.crt, tls.key and ca.crt. */}}
{{- define "nmos-auth.tlsSecret" -}}
{{ include "nmos-auth.fullname" .root }}-{{ .component }}-tls
{{- end -}}
