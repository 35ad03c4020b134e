{{/* Chart name, truncated to the 63 characters Kubernetes allows. */}}
{{- define "coze-session-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "coze-session-gateway.fullname" -}}
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

{{- define "coze-session-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coze-session-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "coze-session-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "coze-session-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "coze-session-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "coze-session-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "coze-session-gateway.secretName" -}}
{{- default (include "coze-session-gateway.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "coze-session-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Drain window: preStop sleep + the gateway's own grace + a margin before SIGKILL. */}}
{{- define "coze-session-gateway.terminationGracePeriodSeconds" -}}
{{- add .Values.preStopSleepSeconds (default 30 .Values.config.server.shutdownGraceSeconds) .Values.terminationGraceMarginSeconds }}
{{- end }}

{{/* Secret files become *_FILE variables: secrets never sit in the environment. */}}
{{- define "coze-session-gateway.secretEnv" -}}
- name: COZE_PRIVATE_KEY_FILE
  value: /etc/coze-session-gateway/secrets/private-key.pem
{{- if or .Values.secret.identityJwtSecret .Values.existingSecretKeys.identityJwtSecret }}
- name: IDENTITY_JWT_SECRET_FILE
  value: /etc/coze-session-gateway/secrets/identity-jwt-secret
{{- end }}
{{- if or .Values.secret.sessionHmacSecret .Values.existingSecretKeys.sessionHmacSecret }}
- name: SESSION_NAME_HMAC_SECRET_FILE
  value: /etc/coze-session-gateway/secrets/session-hmac-secret
{{- end }}
{{- if or .Values.secret.apiKeys .Values.existingSecretKeys.apiKeys }}
- name: IDENTITY_API_KEYS_FILE
  value: /etc/coze-session-gateway/secrets/api-keys.yaml
{{- end }}
{{- if or .Values.secret.redisUrl .Values.existingSecretKeys.redis }}
- name: REDIS_URL_FILE
  value: /etc/coze-session-gateway/secrets/redis-url
- name: CACHE_ENCRYPTION_KEY_FILE
  value: /etc/coze-session-gateway/secrets/redis-encryption-key
{{- end }}
{{- end }}

{{/*
The gateway container for an app's own pod (sidecar mode). It listens on 127.0.0.1 only and
takes the user from a header the app sets; the app must strip that header from its inbound
traffic. Use it as a native sidecar: an initContainers entry with restartPolicy: Always.
Expects the ConfigMap and Secret of this chart (or equivalents) to be mounted by the pod.
*/}}
{{- define "coze-session-gateway.sidecarContainer" -}}
- name: coze-session-gateway
  image: {{ include "coze-session-gateway.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  restartPolicy: Always
  args: ["serve"]
  env:
    - name: GATEWAY_CONFIG
      value: /etc/coze-session-gateway/config/config.yaml
    - name: HOST
      value: 127.0.0.1
    - name: PORT
      value: {{ .Values.sidecar.port | quote }}
    - name: ADMIN_HOST
      value: 0.0.0.0
    - name: ADMIN_PORT
      value: {{ .Values.sidecar.adminPort | quote }}
    - name: IDENTITY_TRUSTED_HEADER
      value: {{ .Values.sidecar.trustedHeader | quote }}
    - name: IDENTITY_TRUSTED_HEADER_ALLOW_FROM
      value: 127.0.0.1/32,::1/128
    {{- include "coze-session-gateway.secretEnv" . | nindent 4 }}
  ports:
    - name: gw-admin
      containerPort: {{ .Values.sidecar.adminPort }}
  startupProbe:
    httpGet: { path: /healthz, port: gw-admin }
    periodSeconds: 1
    failureThreshold: 30
  readinessProbe:
    httpGet: { path: /readyz, port: gw-admin }
  livenessProbe:
    httpGet: { path: /healthz, port: gw-admin }
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: coze-gateway-config
      mountPath: /etc/coze-session-gateway/config
      readOnly: true
    - name: coze-gateway-secrets
      mountPath: /etc/coze-session-gateway/secrets
      readOnly: true
{{- end }}
