/** `--help`: the subcommands, the settings people reach for first, and where the rest is. */
export function helpText(version: string): string {
  return `coze-session-gateway ${version}
Per-user session isolation for the Coze API: authenticates your users, mints a Coze OAuth
token per session_name, and proxies HTTP, SSE and WebSocket traffic to Coze.

Usage:
  coze-session-gateway [serve] [--config FILE] [--<yaml.key>=VALUE ...]
  coze-session-gateway demo [--once] [--port N] [--emulator-port N] [--admin-port N]
  coze-session-gateway emulator [--port N] [--host ADDR] [--app-id ID] [--audience AUD]
                                [--write-private-key FILE | --public-key-file FILE --key-id KID]
  coze-session-gateway check-config [--config FILE] [--mint SESSION_NAME]
  coze-session-gateway healthcheck [--ready] [--config FILE] [--admin.port N] [--admin.host ADDR]
  coze-session-gateway --help | --version

Commands:
  serve          Run the gateway (default).
  demo           Run the gateway with the built-in Coze emulator and two demo users, walk
                 through the isolation story, then keep serving. --once exits 0 if isolation
                 held, 1 if not.
  emulator       Run the Coze emulator alone (a local stand-in for api.coze.cn, port 8081).
                 It generates an app key (--write-private-key FILE saves the private half), or
                 registers yours: --public-key-file FILE (PEM) under --key-id KID. --audience
                 is the JWT aud it expects (api.coze.cn), --app-id the app id (the JWT iss).
  check-config   Validate the configuration; with --mint, perform one real token exchange
                 and print the session and expiry (never the token).
  healthcheck    Ask the running gateway's admin port whether it is alive (/healthz; with
                 --ready, whether it takes traffic: /readyz). The admin address comes from
                 the same config file, environment and flags as serve. Exit 0 healthy, 1 not.
                 The Docker image's HEALTHCHECK runs it.

Most used settings (YAML key / environment variable):
  coze.appId / COZE_APP_ID                       OAuth app id (required)
  coze.keyId / COZE_KEY_ID                       public key fingerprint (required)
  coze.privateKeyFile / COZE_PRIVATE_KEY_FILE    PEM private key (required, or COZE_PRIVATE_KEY)
  coze.baseUrl / COZE_BASE_URL                   https://api.coze.cn (default) or https://api.coze.com
  identity.jwt.jwksUrl / IDENTITY_JWT_JWKS_URL   verify your users' JWTs (or publicKey / secret)
  identity.jwt.issuer / IDENTITY_JWT_ISSUER      the iss of those JWTs (required with a JWT source)
  identity.jwt.audience / IDENTITY_JWT_AUDIENCE  their aud (required with a JWT source)
  identity.apiKeys.file / IDENTITY_API_KEYS_FILE API keys as {subject, sha256}
  identity.trustedHeader.name / IDENTITY_TRUSTED_HEADER   header set by your auth proxy or app
  server.port / PORT (8080)   admin.port / ADMIN_PORT (9091)   log.level / LOG_LEVEL (info)

Precedence: flags > environment > --config FILE (or GATEWAY_CONFIG) > config/default.yaml.
Secrets may be given as files: <key>File in YAML, <ENV>_FILE in the environment.
A bad setting stops start-up with exit code 2 and names every bad setting.

Every setting: docs/configuration.md. Errors: docs/errors.md. Deployment: docs/deployment.md.
`;
}
