/** The parsed command line: a subcommand, switches, and `--name=value` flags. */
export interface ParsedArgs {
  command: string | undefined;
  switches: Set<string>;
  flags: Record<string, string>;
  positional: string[];
}

/** What a command accepts beyond --help and --version. It takes no positional words. */
interface CommandSpec {
  /** Flags that take no value. */
  readonly switches?: readonly string[];
  /** Flags that take a value, with its placeholder for the usage line. */
  readonly flags?: Readonly<Record<string, string>>;
  /** Also --config FILE and any --<yaml.key>=VALUE: the config loader names an unknown one. */
  readonly settings?: boolean;
}

const COMMANDS: Readonly<Record<string, CommandSpec>> = {
  serve: { settings: true },
  'check-config': { flags: { mint: 'SESSION_NAME' }, settings: true },
  healthcheck: { switches: ['ready'], settings: true },
  demo: { switches: ['once'], flags: { port: 'N', 'admin-port': 'N', 'emulator-port': 'N' } },
  emulator: {
    flags: { port: 'N', host: 'ADDR', 'app-id': 'ID', audience: 'AUD', 'write-private-key': 'FILE', 'public-key-file': 'FILE', 'key-id': 'KID' },
  },
};

const GLOBAL_SWITCHES = ['help', 'version'];

/** Flags that take no value, of any command. Everything else is `--name value` or `--name=value`. */
const SWITCHES = new Set([...GLOBAL_SWITCHES, ...Object.values(COMMANDS).flatMap((c) => c.switches ?? [])]);

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function parseArgs(argv: readonly string[]): ParsedArgs {
  const result: ParsedArgs = { command: undefined, switches: new Set(), flags: {}, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-h') {
      result.switches.add('help');
    } else if (arg === '-v') {
      result.switches.add('version');
    } else if (arg.startsWith('--')) {
      const body = arg.slice(2);
      const eq = body.indexOf('=');
      const name = eq === -1 ? body : body.slice(0, eq);
      if (!name) throw new UsageError(`malformed flag "${arg}"`);
      if (SWITCHES.has(name)) {
        if (eq !== -1) throw new UsageError(`--${name} takes no value`);
        result.switches.add(name);
      } else if (eq !== -1) {
        result.flags[name] = body.slice(eq + 1);
      } else {
        const next = argv[i + 1];
        if (next === undefined || next.startsWith('--')) throw new UsageError(`--${name} needs a value`);
        result.flags[name] = next;
        i++;
      }
    } else if (result.command === undefined && result.positional.length === 0) {
      result.command = arg;
    } else {
      result.positional.push(arg);
    }
  }
  return result;
}

/**
 * Refuses what `command` does not take: an unknown command, a stray word, a flag of another
 * command or a misspelt one (`emulator --prot 1` started on the default port, and `demo --bogus`
 * ran as if it were not there). Setting flags of the config commands are left to the loader,
 * which names an unknown one by its key.
 */
export function checkCommandArgs(command: string, args: ParsedArgs): void {
  const spec = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!spec) throw new UsageError(`unknown command "${command}"`);
  const stray = args.positional[0];
  if (stray !== undefined) throw new UsageError(`${command} takes no argument "${stray}"`);
  const valueFlags = spec.flags ?? {};
  const unknown = [
    ...[...args.switches].filter((name) => !GLOBAL_SWITCHES.includes(name) && !spec.switches?.includes(name)),
    ...(spec.settings ? [] : Object.keys(args.flags).filter((name) => !Object.hasOwn(valueFlags, name))),
  ];
  if (unknown.length === 0) return;
  const accepted = [...(spec.switches ?? []).map((name) => `--${name}`), ...Object.entries(valueFlags).map(([name, value]) => `--${name} ${value}`)];
  if (spec.settings) accepted.push('--config FILE', '--<yaml.key>=VALUE');
  throw new UsageError(`${command} takes no --${unknown[0] as string}; its flags: ${accepted.length ? accepted.join(', ') : 'none'}`);
}
