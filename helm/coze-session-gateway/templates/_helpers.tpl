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

{{/* Where the ConfigMap's budgetOverrides key is mounted: a file in the config folder. */}}
{{- define "coze-session-gateway.budgetOverridesPath" -}}
/etc/coze-session-gateway/config/budget-overrides.yaml
{{- end }}

{{/* The gateway's config file: config, with budgets.overridesFile pointing at budgetOverrides when set. */}}
{{- define "coze-session-gateway.configFile" -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- if .Values.budgetOverrides -}}
{{- $budgets := $config.budgets | default dict -}}
{{- $_ := set $budgets "overridesFile" (include "coze-session-gateway.budgetOverridesPath" .) -}}
{{- $_ := set $config "budgets" $budgets -}}
{{- end -}}
{{- toYaml $config -}}
{{- end }}

{{/* The ConfigMap's data: the config file, and the budget overrides when set. */}}
{{- define "coze-session-gateway.configData" -}}
config.yaml: |
  {{- include "coze-session-gateway.configFile" . | nindent 2 }}
{{- with .Values.budgetOverrides }}
budget-overrides.yaml: |
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Pod annotations that roll the pods when what the gateway reads once, at start-up, changes: its
config file and its secrets. Hashes of what this chart renders, so that an app chart running the
sidecar gets them too (sidecarPodAnnotations): it cannot include this chart's template files.
Left out on purpose: the budget overrides and the API keys file (rows marked `reloaded` in
secretFiles). The gateway watches both and reloads them when Kubernetes updates the mounted
volume in place (it does for a ConfigMap or Secret volume mounted as a folder, never through
subPath), so a change takes effect in every pod within the kubelet's sync delay, without a
rollout; rolling every pod to revoke one API key would be slower and cut streams. Setting or
emptying either still rolls the pods: the config file or the environment changes with it.
With existingSecret the Secret is not this chart's: changes to it roll nothing.
*/}}
{{- define "coze-session-gateway.checksumAnnotations" -}}
{{- $secrets := dict -}}
{{- range (include "coze-session-gateway.secretFiles" . | fromYaml).files -}}
{{- if not .reloaded }}{{ $_ := set $secrets .file (index ($.Values.secret | default dict) .value | default "") }}{{ end -}}
{{- end -}}
checksum/config: {{ include "coze-session-gateway.configFile" . | sha256sum }}
checksum/secret: {{ toYaml $secrets | sha256sum }}
{{- end }}

{{/*
The gateway's ports: config.server.port and config.admin.port when set, else the gateway's own
defaults. The container's PORT and ADMIN_PORT, its ports, the probes and the Services follow them
(environment variables beat the config file, so fixed ones would silently win over config).
*/}}
{{- define "coze-session-gateway.port" -}}
{{- (((.Values.config | default dict).server | default dict).port | default 8080) | int -}}
{{- end }}

{{- define "coze-session-gateway.adminPort" -}}
{{- (((.Values.config | default dict).admin | default dict).port | default 9091) | int -}}
{{- end }}

{{/* Drain window: preStop sleep + the gateway's own grace + a margin before SIGKILL. */}}
{{- define "coze-session-gateway.terminationGracePeriodSeconds" -}}
{{- add .Values.preStopSleepSeconds (default 30 .Values.config.server.shutdownGraceSeconds) .Values.terminationGraceMarginSeconds }}
{{- end }}

{{/*
The secret files, one per secret setting of the gateway (src/config/schema.ts marks them secret:
they may come from <ENV>_FILE). Each row: `value`, its name under secret (the file's content) and
existingSecretKeys (the existing Secret holds the file); `file`, its key in the Secret and its
name under /etc/coze-session-gateway/secrets; `env`, the *_FILE variable pointing at it;
`setting`, the gateway setting it fills, which the validate guard keeps out of config (it would
sit in the ConfigMap in plain text); `existing`, when the existingSecretKeys names differ from
`value`; `always`, for the key every Secret holds; `reloaded`, for a file the gateway reloads
when it changes. identity.jwt.publicKey is marked secret by the schema only so that it may come
from a file: a public key may sit in config.
Returned as YAML ({files: [...]}) for fromYaml; a list keeps the environment in this order.
*/}}
{{- define "coze-session-gateway.secretFiles" -}}
files:
  - { value: privateKey, file: private-key.pem, env: COZE_PRIVATE_KEY_FILE, setting: coze.privateKey, always: true }
  - { value: identityJwtSecret, file: identity-jwt-secret, env: IDENTITY_JWT_SECRET_FILE, setting: identity.jwt.secret }
  - { value: sessionHmacSecret, file: session-hmac-secret, env: SESSION_NAME_HMAC_SECRET_FILE, setting: session.hmacSecret }
  - { value: customConsumerHmacSecret, file: custom-consumer-hmac-secret, env: COZE_CUSTOM_CONSUMER_HMAC_SECRET_FILE, setting: coze.sessionContext.customConsumerHmacSecret }
  # Not a secret setting (identity.apiKeys.file is a path), but the list holds key hashes. The
  # gateway reloads it when it changes: no checksum rolls the pods for it (checksumAnnotations).
  - { value: apiKeys, file: api-keys.yaml, env: IDENTITY_API_KEYS_FILE, reloaded: true }
  - { value: redisUrl, file: redis-url, env: REDIS_URL_FILE, setting: cache.redisUrl, existing: [redis] }
  - { value: redisEncryptionKey, file: redis-encryption-key, env: CACHE_ENCRYPTION_KEY_FILE, setting: cache.encryptionKey, existing: [redis, redisEncryptionKey] }
  - { value: previousEncryptionKeys, file: redis-previous-encryption-keys, env: CACHE_PREVIOUS_ENCRYPTION_KEYS_FILE, setting: cache.previousEncryptionKeys }
  - { value: redisPassword, file: redis-password, env: REDIS_PASSWORD_FILE, setting: cache.redisPassword }
  - { value: redisSentinelPassword, file: redis-sentinel-password, env: REDIS_SENTINEL_PASSWORD_FILE, setting: cache.redisSentinelPassword }
{{- end }}

{{/* The rows of secretFiles whose file the Secret holds: set under secret, or declared in existingSecretKeys. */}}
{{- define "coze-session-gateway.presentSecretFiles" -}}
{{- $present := list -}}
{{- $keys := .Values.existingSecretKeys | default dict -}}
{{- range (include "coze-session-gateway.secretFiles" . | fromYaml).files -}}
{{- $row := . -}}
{{- $declared := false -}}
{{- range ($row.existing | default (list $row.value)) }}{{ if index $keys . }}{{ $declared = true }}{{ end }}{{ end -}}
{{- if or $row.always (index ($.Values.secret | default dict) $row.value) $declared }}{{ $present = append $present $row }}{{ end -}}
{{- end -}}
{{- toYaml (dict "files" $present) -}}
{{- end }}

{{/* The Secret's stringData: one key per secret file set under secret (never with existingSecret). */}}
{{- define "coze-session-gateway.secretData" -}}
{{- range $i, $row := (include "coze-session-gateway.secretFiles" . | fromYaml).files }}
{{- $content := index ($.Values.secret | default dict) $row.value }}
{{- if or $row.always $content }}
{{- if $i }}{{ "\n" }}{{ end -}}
{{ $row.file }}: {{ $content | default "" | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Secret files become *_FILE variables: secrets never sit in the environment. */}}
{{- define "coze-session-gateway.secretEnv" -}}
{{- range $i, $row := (include "coze-session-gateway.presentSecretFiles" . | fromYaml).files }}
{{- if $i }}{{ "\n" }}{{ end -}}
- name: {{ $row.env }}
  value: /etc/coze-session-gateway/secrets/{{ $row.file }}
{{- end }}
{{- with .Values.redisTlsCaSecret }}
{{- if .name }}
- name: REDIS_TLS_CA_FILE
  value: /etc/coze-session-gateway/redis-ca/ca.pem
{{- end }}
{{- end }}
{{- end }}

{{/* The TCP port of a URL: its own, or its scheme's (80 for http and ws, 443 for https and wss). */}}
{{- define "coze-session-gateway.urlPort" -}}
{{- $url := urlParse . -}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" -}}
{{- if $port }}{{ $port }}{{ else if has $url.scheme (list "http" "ws") }}80{{ else }}443{{ end -}}
{{- end }}

{{/*
The Redis topologies the values set, as a comma list of the values that set them (empty: no
Redis). The validate guard refuses more than one.
*/}}
{{- define "coze-session-gateway.redisTopologies" -}}
{{- $cache := (.Values.config | default dict).cache | default dict -}}
{{- $set := list -}}
{{- if or .Values.secret.redisUrl .Values.existingSecretKeys.redis }}{{ $set = append $set "secret.redisUrl" }}{{ end -}}
{{- if $cache.redisSentinels }}{{ $set = append $set "config.cache.redisSentinels" }}{{ end -}}
{{- if $cache.redisClusterNodes }}{{ $set = append $set "config.cache.redisClusterNodes" }}{{ end -}}
{{- join "," $set -}}
{{- end }}

{{/* The volume and mount of the Redis CA (redisTlsCaSecret), when set; `mount` picks which. */}}
{{- define "coze-session-gateway.redisCaVolume" -}}
{{- $ca := .Values.redisTlsCaSecret | default dict -}}
{{- if $ca.name -}}
- name: redis-ca
  secret:
    secretName: {{ $ca.name }}
    items:
      - key: {{ $ca.key | default "ca.crt" }}
        path: ca.pem
{{- end }}
{{- end }}

{{- define "coze-session-gateway.redisCaMount" -}}
{{- $ca := .Values.redisTlsCaSecret | default dict -}}
{{- if $ca.name -}}
- name: redis-ca
  mountPath: /etc/coze-session-gateway/redis-ca
  readOnly: true
{{- end }}
{{- end }}

{{/*
Contradictory or missing values fail the render, naming the value (STYLE.md: fail guards).
Included once, from configmap.yaml, which both modes render.
*/}}
{{- define "coze-session-gateway.validate" -}}
{{- $v := .Values -}}
{{- if not (has $v.mode (list "standalone" "sidecar")) }}
{{- fail (printf "mode must be standalone or sidecar, not %v" $v.mode) }}
{{- end }}
{{- /* In an app's pod the sidecar container sets PORT and ADMIN_PORT from sidecar.*, which beat the config file. */}}
{{- if eq $v.mode "sidecar" }}
{{- range $setting, $value := dict "server.port" "port" "admin.port" "adminPort" }}
{{- $section := index ($v.config | default dict) (first (splitList "." $setting)) | default dict }}
{{- if and (hasKey $section "port") (ne (int $section.port) (int (index $v.sidecar $value))) }}
{{- fail (printf "in sidecar mode the gateway listens on sidecar.%s (%v), not config.%s (%v): set sidecar.%s instead" $value (index $v.sidecar $value) $setting $section.port $value) }}
{{- end }}
{{- end }}
{{- end }}
{{- $secretFiles := (include "coze-session-gateway.secretFiles" . | fromYaml).files }}
{{- /* A secret under config would sit in the ConfigMap in plain text, readable by anyone who may read ConfigMaps. */}}
{{- range $secretFiles }}
{{- if .setting }}
{{- $node := $v.config | default dict }}
{{- $found := true }}
{{- range $part := splitList "." .setting }}
{{- if and $found (kindIs "map" $node) (hasKey $node $part) }}{{ $node = index $node $part }}{{ else }}{{ $found = false }}{{ end }}
{{- end }}
{{- if $found }}
{{- $existing := printf "the key %s in that Secret" .file }}
{{- if not .always }}{{ $existing = printf "%s and existingSecretKeys.%s: true" $existing (last (.existing | default (list .value))) }}{{ end }}
{{- fail (printf "config.%s would put a secret in the ConfigMap: set secret.%s instead (with existingSecret: %s)" .setting .value $existing) }}
{{- end }}
{{- end }}
{{- end }}
{{- /* A misspelt or unknown key would be dropped without a word, and the gateway would run without it. */}}
{{- $known := list }}
{{- $knownExisting := list }}
{{- range $secretFiles }}
{{- $known = append $known .value }}
{{- if not .always }}{{ $knownExisting = concat $knownExisting (.existing | default (list .value)) }}{{ end }}
{{- end }}
{{- range $key, $_ := $v.secret | default dict }}
{{- if not (has $key $known) }}
{{- fail (printf "secret.%s is not a secret this chart knows; the keys are %s" $key (join ", " $known)) }}
{{- end }}
{{- end }}
{{- range $key, $_ := $v.existingSecretKeys | default dict }}
{{- if not (has $key $knownExisting) }}
{{- fail (printf "existingSecretKeys.%s is not a key this chart knows; the keys are %s" $key (join ", " (uniq $knownExisting))) }}
{{- end }}
{{- end }}
{{- /*
With existingSecret the chart renders no Secret: an inline secret.* value would reach no pod,
while its *_FILE variable would point at a key the user's Secret may lack (the gateway stops on
ENOENT). existingSecretKeys says which keys that Secret holds, and means nothing without it.
*/}}
{{- if $v.existingSecret }}
{{- range $secretFiles }}
{{- if index ($v.secret | default dict) .value }}
{{- $declare := "" }}
{{- if not .always }}{{ $declare = printf " and set existingSecretKeys.%s: true" (last (.existing | default (list .value))) }}{{ end }}
{{- fail (printf "set either existingSecret or secret.%s, not both: with existingSecret the chart renders no Secret, so the value would reach no pod; put it in the Secret %s under the key %s%s" .value $v.existingSecret .file $declare) }}
{{- end }}
{{- end }}
{{- else }}
{{- range $key, $on := $v.existingSecretKeys | default dict }}
{{- if $on }}
{{- $values := list }}
{{- range $secretFiles }}{{ if has $key (.existing | default (list .value)) }}{{ $values = append $values (printf "secret.%s" .value) }}{{ end }}{{ end }}
{{- fail (printf "existingSecretKeys.%s: true declares keys of an existingSecret, which is not set: the chart's own Secret would lack them and the gateway would not start; set %s instead" $key (join " and " $values)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not $v.existingSecret) (not $v.secret.privateKey) }}
{{- fail "secret.privateKey (the Coze OAuth app PEM) or existingSecret is required" }}
{{- end }}
{{- if not $v.config.coze.appId }}
{{- fail "config.coze.appId is required" }}
{{- end }}
{{- if not $v.config.coze.keyId }}
{{- fail "config.coze.keyId is required" }}
{{- end }}
{{- /* Helm reads an unquoted number in a values file as a float: a 19-digit bot id is rounded, and
toYaml writes 1127900106117 as 1.127900106117e+12. An id set with --set is an integer, written exactly. */}}
{{- range $path := list "coze.appId" "coze.accountId" "coze.keyId" "coze.scope.botIdList" "policy.allowedBotIds" "policy.allowedWorkflowIds" "policy.allowedAppIds" }}
{{- $node := $v.config | default dict }}
{{- range $part := splitList "." $path }}{{ $node = (kindIs "map" $node) | ternary (index ($node | default dict) $part) nil }}{{ end }}
{{- range $value := (kindIs "slice" $node) | ternary $node (list $node) }}
{{- if kindIs "float64" $value }}
{{- fail (printf "config.%s must be quoted in a values file (\"%s\"): Helm reads an unquoted number as a float, which rounds long ids" $path (toString $value)) }}
{{- end }}
{{- end }}
{{- end }}
{{- $identity := ($v.config | default dict).identity | default dict }}
{{- $jwt := $identity.jwt | default dict }}
{{- $header := $identity.trustedHeader | default dict }}
{{- if eq $v.mode "standalone" }}
{{- if not (or $jwt.jwksUrl $jwt.publicKey $v.secret.identityJwtSecret $v.existingSecretKeys.identityJwtSecret $v.secret.apiKeys $v.existingSecretKeys.apiKeys $header.name) }}
{{- fail "configure an identity source: config.identity.jwt.jwksUrl, secret.identityJwtSecret, secret.apiKeys or config.identity.trustedHeader.name" }}
{{- end }}
{{- end }}
{{- if or $jwt.jwksUrl $jwt.publicKey $v.secret.identityJwtSecret $v.existingSecretKeys.identityJwtSecret }}
{{- if not $jwt.issuer }}
{{- fail "config.identity.jwt.issuer is required with a JWT source: the iss of the tokens meant for this gateway, e.g. [https://idp.example.com]" }}
{{- end }}
{{- if not (or $jwt.audience $jwt.allowMissingAudience) }}
{{- fail "config.identity.jwt.audience is required with a JWT source: the aud of the tokens meant for this gateway, e.g. [my-app] (or config.identity.jwt.allowMissingAudience: true for an identity provider that sets no aud)" }}
{{- end }}
{{- end }}
{{- if $v.budgetOverrides }}
{{- if not (kindIs "slice" $v.budgetOverrides) }}
{{- fail "budgetOverrides must be a list of {subject, source?, tokensPerDay?, tokensPerMonth?, requestsPerDay?} (docs/usage-and-budgets.md)" }}
{{- end }}
{{- if ((($v.config | default dict).budgets | default dict).overridesFile) }}
{{- fail "set either budgetOverrides or config.budgets.overridesFile, not both: with budgetOverrides the chart mounts the file and sets overridesFile itself" }}
{{- end }}
{{- end }}
{{- $cache := ($v.config | default dict).cache | default dict }}
{{- $redis := include "coze-session-gateway.redisTopologies" . | splitList "," | compact }}
{{- if gt (len $redis) 1 }}
{{- fail (printf "set only one Redis topology: %s" (join " and " $redis)) }}
{{- end }}
{{- if and $redis (not (or $v.secret.redisEncryptionKey $v.existingSecretKeys.redis $v.existingSecretKeys.redisEncryptionKey)) }}
{{- fail (printf "%s needs secret.redisEncryptionKey: tokens are encrypted at rest in Redis" (first $redis)) }}
{{- end }}
{{- if and $cache.redisSentinels (not $cache.redisSentinelName) }}
{{- fail "config.cache.redisSentinels needs config.cache.redisSentinelName: the master name the Sentinels monitor" }}
{{- end }}
{{- if and ($v.redisTlsCaSecret | default dict).name (or $cache.redisSentinels $cache.redisClusterNodes) (not $cache.redisTls) }}
{{- fail "redisTlsCaSecret needs config.cache.redisTls: true (TLS to the Sentinels or cluster nodes)" }}
{{- end }}
{{- if and ($v.redisTlsCaSecret | default dict).name $v.secret.redisUrl (not (hasPrefix "rediss://" $v.secret.redisUrl)) }}
{{- fail "redisTlsCaSecret needs TLS: secret.redisUrl must be a rediss:// URL" }}
{{- end }}
{{- if not (regexMatch "^[0-9]+$" (toString $v.preStopSleepSeconds)) }}
{{- fail (printf "preStopSleepSeconds must be a whole number of seconds, 0 for no preStop hook, not %v" $v.preStopSleepSeconds) }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and $v.pdb.enabled (eq $v.mode "standalone") }}
{{- $floorName := ternary "autoscaling.minReplicas" "replicaCount" (not (not $v.autoscaling.enabled)) }}
{{- $floor := int (ternary $v.autoscaling.minReplicas $v.replicaCount (not (not $v.autoscaling.enabled))) }}
{{- $min := $v.pdb.minAvailable }}
{{- if kindIs "string" $min }}
{{- if not (regexMatch "^[0-9]+%$" $min) }}
{{- fail (printf "pdb.minAvailable must be a number or a percentage such as 50%%, not %q" $min) }}
{{- end }}
{{- if ge (atoi (trimSuffix "%" $min)) 100 }}
{{- fail (printf "pdb.minAvailable %s leaves no pod evictable: node drains and upgrades would hang" $min) }}
{{- end }}
{{- else if ge (int $min) $floor }}
{{- fail (printf "pdb.minAvailable (%d) must be below %s (%d), or no pod could ever be evicted: node drains and upgrades would hang" (int $min) $floorName $floor) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The context (Values, Chart, Release) of this chart, as YAML, whichever chart renders the sidecar
templates: this chart itself, or an app chart that lists coze-session-gateway as a dependency
and includes the templates with its own context (`.`). Then this chart's values are the app's
.Values.coze-session-gateway, into which Helm has merged this chart's defaults. Never the app's
own image, ports or secrets.
*/}}
{{- define "coze-session-gateway.sidecarScope" -}}
{{- $values := .Values -}}
{{- $appVersion := "" -}}
{{- if eq .Chart.Name "coze-session-gateway" -}}
{{- $appVersion = .Chart.AppVersion -}}
{{- else -}}
{{- if not (hasKey .Values "coze-session-gateway") -}}
{{- fail (printf "coze-session-gateway.sidecarContainer is rendered from chart %s, whose values have no coze-session-gateway key: list coze-session-gateway (without an alias) under dependencies in that chart's Chart.yaml" .Chart.Name) -}}
{{- end -}}
{{- $values = index .Values "coze-session-gateway" -}}
{{- end -}}
{{- toYaml (dict "Values" $values "Chart" (dict "Name" "coze-session-gateway" "AppVersion" $appVersion) "Release" (dict "Name" .Release.Name "Service" .Release.Service)) -}}
{{- end -}}

{{/*
The checksum annotations for the pod template of an app chart that runs the sidecar (include it
under template.metadata.annotations with the app chart's own context), so that its pods roll
when the gateway's config or Secret changes, as the standalone Deployment's do.
*/}}
{{- define "coze-session-gateway.sidecarPodAnnotations" -}}
{{- include "coze-session-gateway.checksumAnnotations" (include "coze-session-gateway.sidecarScope" . | fromYaml) -}}
{{- end }}

{{/*
The gateway container for an app's own pod (sidecar mode): listed under initContainers, its
restartPolicy Always makes it a native sidecar that starts before the app and stops after it.
It listens on 127.0.0.1 only and takes the user from a header the app sets; the app must strip
that header from its inbound traffic. The pod needs the volumes of
coze-session-gateway.sidecarVolumes and securityContext.fsGroup 10001 (the key is group-readable).
*/}}
{{- define "coze-session-gateway.sidecarContainer" -}}
{{- $scope := include "coze-session-gateway.sidecarScope" . | fromYaml -}}
{{- $v := $scope.Values -}}
{{- $tag := required "coze-session-gateway: image.tag is empty; set it (an app chart cannot see this chart's appVersion)" ($v.image.tag | default $scope.Chart.AppVersion) -}}
{{- $port := required "coze-session-gateway: sidecar.port is required" $v.sidecar.port -}}
{{- $adminPort := required "coze-session-gateway: sidecar.adminPort is required" $v.sidecar.adminPort -}}
{{- $header := required "coze-session-gateway: sidecar.trustedHeader is required" $v.sidecar.trustedHeader -}}
- name: coze-session-gateway
  image: {{ printf "%s:%s" (required "coze-session-gateway: image.repository is required" $v.image.repository) $tag }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  restartPolicy: Always
  args: ["serve"]
  env:
    - name: GATEWAY_CONFIG
      value: /etc/coze-session-gateway/config/config.yaml
    - name: HOST
      value: 127.0.0.1
    - name: PORT
      value: {{ $port | toString | quote }}
    - name: ADMIN_HOST
      value: 0.0.0.0
    - name: ADMIN_PORT
      value: {{ $adminPort | toString | quote }}
    - name: IDENTITY_TRUSTED_HEADER
      value: {{ $header | quote }}
    - name: IDENTITY_TRUSTED_HEADER_ALLOW_FROM
      value: 127.0.0.1/32,::1/128
    {{- include "coze-session-gateway.secretEnv" $scope | nindent 4 }}
  ports:
    - name: gw-admin
      containerPort: {{ $adminPort }}
  startupProbe:
    httpGet: { path: /healthz, port: gw-admin }
    periodSeconds: 1
    failureThreshold: 30
  readinessProbe:
    httpGet: { path: /readyz, port: gw-admin }
  livenessProbe:
    httpGet: { path: /healthz, port: gw-admin }
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  volumeMounts:
    - name: coze-gateway-config
      mountPath: /etc/coze-session-gateway/config
      readOnly: true
    - name: coze-gateway-secrets
      mountPath: /etc/coze-session-gateway/secrets
      readOnly: true
    {{- with include "coze-session-gateway.redisCaMount" $scope }}{{ . | nindent 4 }}{{ end }}
{{- end }}

{{/* The two volumes the sidecar mounts: this chart's ConfigMap and Secret (or existingSecret). */}}
{{- define "coze-session-gateway.sidecarVolumes" -}}
{{- $scope := include "coze-session-gateway.sidecarScope" . | fromYaml -}}
- name: coze-gateway-config
  configMap:
    name: {{ include "coze-session-gateway.fullname" $scope }}
- name: coze-gateway-secrets
  secret:
    secretName: {{ include "coze-session-gateway.secretName" $scope }}
    # Group-readable: with the pod's fsGroup 10001, the gateway's group owns the files.
    defaultMode: 0440
{{- with include "coze-session-gateway.redisCaVolume" $scope }}{{ . | nindent 0 }}{{ end }}
{{- end }}
