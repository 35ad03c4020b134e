/** The parsed command line: a subcommand, switches, and `--name=value` flags. */
export interface ParsedArgs {
  command: string | undefined;
  switches: Set<string>;
  flags: Record<string, string>;
  positional: string[];
}

/** Flags that take no value. Everything else is `--name value` or `--name=value`. */
const SWITCHES = new Set(['help', 'version', 'once', 'json', 'ready']);

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
