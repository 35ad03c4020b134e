import http from 'node:http';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { loadConfig } from '../config/load.js';
import { createEmulator, generateEmulatorApp } from '../emulator/index.js';
import { createLogger } from '../log/logger.js';
import { createGateway, createMainServer } from '../server.js';
import { UsageError, type ParsedArgs } from './args.js';
import { addressPort, listen, listenFailure } from './listen.js';
import { untilSignal } from './signals.js';

const DEMO_ISSUER = 'https://demo-idp.local';
const DEMO_AUDIENCE = 'coze-session-gateway-demo';
const BOT_ID = '7480000000000000001';

interface Step {
  title: string;
  ok: boolean;
}

/**
 * `demo [--once]`: the whole point in one minute, with no Coze account and no network. Starts the
 * emulator and the gateway with generated keys and a demo identity issuer, then shows two users
 * behind one bot with isolated histories and a streamed reply.
 */
export async function runDemo(args: ParsedArgs): Promise<number> {
  const port = portFlag(args, 'port', 8080);
  const adminPort = portFlag(args, 'admin-port', 9091);
  const emulatorPort = portFlag(args, 'emulator-port', 8081);
  const say = (line = '') => process.stdout.write(`${line}\n`);

  const { app, privateKeyPem } = await generateEmulatorApp('1127900106117');
  const emulator = await createEmulator({ apps: [app], port: emulatorPort, audience: 'api.coze.cn' }).catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(err.code === 'EADDRINUSE' ? `port ${emulatorPort} is busy: choose another with --emulator-port` : `cannot start the emulator: ${err.message}`);
  });
  const issuer = await generateKeyPair('RS256');
  const config = loadConfig({
    env: {
      COZE_BASE_URL: emulator.url,
      COZE_AUDIENCE: 'api.coze.cn',
      COZE_APP_ID: app.appId,
      COZE_KEY_ID: app.keys[0]?.kid ?? '',
      COZE_PRIVATE_KEY: privateKeyPem,
      IDENTITY_JWT_PUBLIC_KEY: await exportSPKI(issuer.publicKey),
      IDENTITY_JWT_ISSUER: DEMO_ISSUER,
      IDENTITY_JWT_AUDIENCE: DEMO_AUDIENCE,
      ALLOWED_BOT_IDS: BOT_ID,
      LOG_LEVEL: 'warn',
    },
    flags: { 'server.host': '127.0.0.1', 'admin.host': '127.0.0.1' },
  });
  const gateway = await createGateway(config, { logger: createLogger({ level: 'warn', destination: process.stderr as unknown as never }) });
  const main = createMainServer(gateway, config.server);
  main.on('upgrade', gateway.onUpgrade);
  const admin = http.createServer(gateway.adminHandler);
  for (const [server, at, flag] of [[main, port, '--port'], [admin, adminPort, '--admin-port']] as const) {
    await listen(server, at, '127.0.0.1').catch(async (err: unknown) => {
      await emulator.close();
      throw new UsageError(`${listenFailure(err, '127.0.0.1', at)} (${flag}): choose another port with --port / --admin-port`);
    });
  }
  const url = `http://127.0.0.1:${addressPort(main)}`;
  const adminUrl = `http://127.0.0.1:${addressPort(admin)}`;
  const credential = (sub: string) =>
    new SignJWT({ name: sub }).setProtectedHeader({ alg: 'RS256', typ: 'JWT' }).setSubject(sub).setIssuer(DEMO_ISSUER).setAudience(DEMO_AUDIENCE).setIssuedAt().setExpirationTime('12h').sign(issuer.privateKey);
  const alice = await credential('alice');
  const bob = await credential('bob');

  say('coze-session-gateway demo: two users, one bot, isolated histories.');
  say(`  gateway   ${url}   (admin ${adminUrl}/metrics)`);
  say(`  Coze      ${emulator.url}   (the built-in emulator stands in for api.coze.cn)`);
  say(`  bot_id    ${BOT_ID}`);
  say('');
  say('Demo credentials (JWTs from a demo identity issuer; your own auth replaces this in production).');
  say('Paste these into another shell:');
  say(`  export ALICE=${alice}`);
  say(`  export BOB=${bob}`);
  say('');
  say('Try it:');
  say(`  curl -N ${url}/v3/chat -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' \\`);
  say(`    -d '{"bot_id":"${BOT_ID}","user_id":"x","stream":true,"additional_messages":[{"role":"user","content":"Hi","content_type":"text"}]}'`);
  say(`  curl "${url}/v1/conversations?bot_id=${BOT_ID}" -H "Authorization: Bearer $BOB"`);
  // baseWsURL too: left out, coze-js sends WebSockets (and the credential) to wss://ws.coze.cn.
  say(`  // @coze/api: new CozeAPI({ baseURL: '${url}', baseWsURL: '${url.replace(/^http/, 'ws')}', token: process.env.ALICE })`);
  say('');

  const steps = await walkthrough(url, adminUrl, alice, bob, say);
  const passed = steps.every((s) => s.ok);
  say('');
  say(passed ? 'Isolation held: every step behaved as expected.' : `Isolation check FAILED: ${steps.filter((s) => !s.ok).map((s) => s.title).join('; ')}`);

  if (!args.switches.has('once')) {
    say('');
    say('Still serving. Press Ctrl-C to stop.');
    await untilSignal();
  }
  main.closeAllConnections();
  admin.closeAllConnections();
  await Promise.all([new Promise((r) => main.close(r)), new Promise((r) => admin.close(r))]);
  await gateway.close();
  await emulator.close();
  return passed ? 0 : 1;
}

async function walkthrough(url: string, adminUrl: string, alice: string, bob: string, say: (l?: string) => void): Promise<Step[]> {
  const steps: Step[] = [];
  const check = (title: string, ok: boolean, detail: string) => {
    steps.push({ title, ok });
    say(`  ${ok ? 'ok  ' : 'FAIL'} ${detail}`);
  };
  const call = async (token: string, path: string, init: { method?: string; body?: unknown } = {}) => {
    const res = await fetch(`${url}${path}`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
    return (await res.json()) as { code: number; msg?: string; data?: Record<string, unknown> & { conversations?: unknown[] } };
  };

  say('1. alice creates a conversation');
  const created = await call(alice, '/v1/conversation/create', { method: 'POST', body: { bot_id: BOT_ID } });
  const conversationId = String(created.data?.id ?? '');
  check('alice creates a conversation', created.code === 0 && conversationId !== '', `conversation ${conversationId || '(none)'}`);

  say('2. alice chats; the reply streams as it arrives');
  const res = await fetch(`${url}/v3/chat?conversation_id=${encodeURIComponent(conversationId)}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
    body: JSON.stringify({ bot_id: BOT_ID, user_id: 'alice', stream: true, additional_messages: [{ role: 'user', content: 'What is session isolation?', content_type: 'text' }] }),
  });
  let reply = '';
  let events = 0;
  process.stdout.write('     alice> ');
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const chunk of res.body ?? []) {
    buffered += decoder.decode(chunk as Uint8Array, { stream: true });
    let end;
    while ((end = buffered.indexOf('\n\n')) !== -1) {
      const frame = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      events += 1;
      if (frame.startsWith('event:conversation.message.delta')) {
        const data = JSON.parse(frame.slice(frame.indexOf('data:') + 5)) as { content?: string };
        reply += data.content ?? '';
        process.stdout.write(data.content ?? '');
      }
    }
  }
  process.stdout.write('\n');
  check('alice streams a reply', res.ok && reply.length > 0, `${events} events streamed`);

  say('3. bob lists conversations of the same bot');
  const bobList = await call(bob, `/v1/conversations?bot_id=${BOT_ID}`);
  const bobCount = bobList.data?.conversations?.length ?? -1;
  check('bob sees none of alice', bobList.code === 0 && bobCount === 0, `bob sees ${bobCount} conversations`);

  say("4. bob tries to read alice's conversation by id");
  const intrusion = await call(bob, `/v1/conversation/retrieve?conversation_id=${encodeURIComponent(conversationId)}`);
  check('bob is refused', intrusion.code !== 0, `refused by Coze with code ${intrusion.code} (${intrusion.msg ?? ''})`);

  say('5. metrics excerpt');
  const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
  const excerpt = metrics.split('\n').filter((l) => /^coze_gateway_(token_mints_total\{outcome="success"\}|token_cache_requests_total|http_requests_total\{)/.test(l));
  for (const line of excerpt) say(`     ${line}`);
  check('metrics are served', excerpt.length > 0, `${excerpt.length} lines from ${adminUrl}/metrics`);
  return steps;
}

function portFlag(args: ParsedArgs, name: string, fallback: number): number {
  const raw = args.flags[name];
  if (raw === undefined) return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--${name} expects a port number`);
  return port;
}
