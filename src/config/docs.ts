import { stringify } from 'yaml';
import { listSettings, type SettingInfo } from './schema.js';

/**
 * Renders `docs/configuration.md` and `config/default.yaml` from the schema. A contract test
 * regenerates both and fails when the committed files drift (`npm run docs:config` rewrites them).
 */
export function renderConfigurationMd(settings: SettingInfo[] = listSettings()): string {
  const sections = groupBySection(settings);
  const lines: string[] = [
    '# Configuration',
    '',
    '<!-- Generated from src/config/schema.ts by `npm run docs:config`. Do not edit by hand: a test fails when this file drifts. -->',
    '',
    'Precedence, highest first: command-line flags (`--<yaml.key>=VALUE`), environment variables, the YAML file given by',
    '`--config FILE` or `GATEWAY_CONFIG`, then `config/default.yaml`. The whole configuration is validated at start-up;',
    'every bad setting is reported at once, by YAML key and environment variable, and the process exits with code 2.',
    '',
    'Secrets (marked below) can be given inline or as a file: `<key>File` in YAML, `<ENV>_FILE` in the environment, for',
    'Kubernetes secrets mounted as files. Setting both is an error. Secrets are never printed or logged.',
    '',
    'URL settings take no user name or password (`user:password@`): the gateway would print them and never send them.',
    '`cache.redisUrl` is the exception: its password is used, and the setting is a secret.',
    '',
    'Unknown keys are errors. At least one identity source (`identity.jwt.*`, `identity.apiKeys.file` or',
    '`identity.trustedHeader.name`) must be configured. With more than one, `session.template` must hold `{source}`',
    'unless `session.sharedNamespace` is true (the same subject from two sources would share one Coze history).',
    '',
    'The endpoints the gateway exposes, and the rules each one carries, are listed in [routes.md](routes.md);',
    '`policy.routes` and `policy.disabledRoutes` narrow that table.',
    '',
  ];
  for (const [section, items] of sections) {
    lines.push(`## ${section}`, '', '| YAML key | Environment variable | Type | Default | Description |', '|---|---|---|---|---|');
    for (const s of items) {
      const keyCell = s.fileKey ? `\`${s.key}\` / \`${s.fileKey}\`` : `\`${s.key}\``;
      const envCell = s.env ? (s.fileEnv ? `\`${s.env}\` / \`${s.fileEnv}\`` : `\`${s.env}\``) : '';
      const typeCell = s.type === 'enum' && s.values ? s.values.map((v) => `\`${v}\``).join(', ') : `${s.type}${boundsText(s)}`;
      const secret = s.secret ? ' **Secret.**' : '';
      lines.push(`| ${keyCell} | ${envCell} | ${typeCell} | ${defaultText(s)} | ${escapeCell(s.description)}${secret} |`);
    }
    lines.push('');
  }
  return `${lines.join('\n').trimEnd()}\n`;
}

export function renderDefaultYaml(settings: SettingInfo[] = listSettings()): string {
  const out: string[] = [
    '# coze-session-gateway defaults.',
    '# Generated from src/config/schema.ts by `npm run docs:config`; a test fails when it drifts.',
    '# Override with a file (--config FILE or GATEWAY_CONFIG), environment variables or flags.',
    '# Every setting is described in docs/configuration.md.',
  ];
  for (const [section, items] of groupBySection(settings)) {
    out.push('', `${section}:`);
    let currentGroup = '';
    for (const s of items) {
      const parts = s.key.split('.').slice(1);
      const indent = '  '.repeat(parts.length);
      if (parts.length > 1) {
        const group = parts.slice(0, -1).join('.');
        if (group !== currentGroup) {
          out.push(`  ${group}:`);
          currentGroup = group;
        }
      }
      out.push(`${indent}# ${s.description}${s.env ? ` (env ${s.env})` : ''}`);
      const name = parts[parts.length - 1] as string;
      if (s.default === undefined) {
        out.push(`${indent}# ${name}:${s.defaultText ? ` # default: ${s.defaultText}` : ''}`);
      } else {
        out.push(`${indent}${name}: ${yamlScalar(s.default)}`);
      }
    }
  }
  return `${out.join('\n')}\n`;
}

function groupBySection(settings: SettingInfo[]): Map<string, SettingInfo[]> {
  const sections = new Map<string, SettingInfo[]>();
  for (const s of settings) {
    const section = s.key.split('.')[0] as string;
    sections.set(section, [...(sections.get(section) ?? []), s]);
  }
  return sections;
}

function defaultText(s: SettingInfo): string {
  if (s.defaultText) return escapeCell(s.defaultText);
  if (s.default === undefined) return 'unset';
  if (Array.isArray(s.default)) return s.default.length ? `\`${s.default.join(',')}\`` : 'empty';
  if (s.default === '') return 'empty';
  return `\`${String(s.default)}\``;
}

/** "integer, 1 to 86400": out-of-range values are refused at start-up, so the docs say where the range ends. */
function boundsText(s: SettingInfo): string {
  if (s.min !== undefined && s.max !== undefined) return `, ${s.min} to ${s.max}`;
  if (s.min !== undefined) return `, at least ${s.min}`;
  if (s.max !== undefined) return `, at most ${s.max}`;
  return '';
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

function yamlScalar(value: unknown): string {
  if (Array.isArray(value)) return value.length === 0 ? '[]' : `[${value.map((v) => yamlScalar(v)).join(', ')}]`;
  return stringify(value).trimEnd();
}
