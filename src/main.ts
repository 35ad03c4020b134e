#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { ConfigError } from './config/load.js';
import { checkCommandArgs, parseArgs, UsageError } from './cli/args.js';
import { helpText } from './cli/help.js';
import { runCheckConfig } from './cli/check-config.js';
import { runEmulator } from './cli/emulator-command.js';

/**
 * The command line. The only reader of argv and the only caller of process.exit: every
 * subcommand returns its exit code. A misconfiguration exits 2 with every bad setting named.
 */
const EXIT_CONFIG = 2;

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args.switches.has('version')) {
    process.stdout.write(`coze-session-gateway ${packageVersion()}\n`);
    return 0;
  }
  if (args.switches.has('help') || args.command === 'help') {
    process.stdout.write(helpText(packageVersion()));
    return 0;
  }
  const command = args.command ?? 'serve';
  checkCommandArgs(command, args);
  switch (command) {
    case 'serve': {
      const { runServe } = await import('./cli/serve.js');
      return runServe(args);
    }
    case 'demo': {
      const { runDemo } = await import('./cli/demo.js');
      return runDemo(args);
    }
    case 'emulator':
      return runEmulator(args);
    case 'check-config':
      return runCheckConfig(args);
    case 'healthcheck': {
      const { runHealthcheck } = await import('./cli/healthcheck.js');
      return runHealthcheck(args);
    }
    default:
      throw new UsageError(`unknown command "${args.command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    // A server command has drained and flushed its logs by now. Exiting explicitly means a
    // stdio pipe left open by the environment can never hold the pod past its drain window.
    process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`coze-session-gateway: ${err.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    if (err instanceof UsageError) {
      process.stderr.write(`coze-session-gateway: ${err.message}\nRun "coze-session-gateway --help" for usage.\n`);
      process.exit(EXIT_CONFIG);
    }
    process.stderr.write(`coze-session-gateway: fatal: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
