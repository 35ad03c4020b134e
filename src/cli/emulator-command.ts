import { readFileSync, writeFileSync } from 'node:fs';
import { createEmulator, generateEmulatorApp, type EmulatorApp } from '../emulator/index.js';
import { UsageError, type ParsedArgs } from './args.js';
import { untilSignal } from './signals.js';

/**
 * `emulator`: the Coze stand-in on its own, for local development against the gateway.
 * Either registers a given public key, or generates an app and writes its private key to a
 * file (it is never printed).
 */
export async function runEmulator(args: ParsedArgs): Promise<number> {
  const { port = '8081', host = '127.0.0.1', audience = 'api.coze.cn' } = args.flags;
  const portNumber = Number(port);
  if (!Number.isInteger(portNumber) || portNumber < 0 || portNumber > 65535) throw new UsageError('--port expects a port number');

  let app: EmulatorApp;
  const publicKeyFile = args.flags['public-key-file'];
  if (publicKeyFile) {
    const kid = args.flags['key-id'];
    if (!kid) throw new UsageError('--public-key-file needs --key-id');
    app = { appId: args.flags['app-id'] ?? '1000000000001', keys: [{ kid, publicKeyPem: readFileSync(publicKeyFile, 'utf8') }] };
  } else {
    const generated = await generateEmulatorApp(args.flags['app-id']);
    app = generated.app;
    const out = args.flags['write-private-key'];
    if (out) writeFileSync(out, generated.privateKeyPem, { mode: 0o600 });
    else process.stdout.write('note: pass --write-private-key FILE to obtain the generated private key\n');
  }

  const emulator = await createEmulator({ apps: [app], host, port: portNumber, audience });
  process.stdout.write(
    [
      `Coze emulator listening on ${emulator.url}`,
      `  COZE_BASE_URL=${emulator.url}`,
      `  COZE_AUDIENCE=${audience}`,
      `  COZE_APP_ID=${app.appId}`,
      `  COZE_KEY_ID=${app.keys[0]?.kid ?? ''}`,
      args.flags['write-private-key'] ? `  COZE_PRIVATE_KEY_FILE=${args.flags['write-private-key']}` : '',
      'Press Ctrl-C to stop.',
      '',
    ]
      .filter((l) => l !== '')
      .join('\n') + '\n',
  );
  await untilSignal();
  await emulator.close();
  return 0;
}
