import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { targetForLog } from '../../../src/http/request-guard.js';

describe('targetForLog', () => {
  it('target-for-log-keeps-no-credential: the query, a fragment and userinfo never reach the log; long targets are cut', () => {
    const cases: Record<string, string> = {
      '/v1/bots/b': '/v1/bots/b',
      '/v1/chat?authorization=Bearer%20x': '/v1/chat',
      '/v1/chat#access_token=x': '/v1/chat',
      '/v1/chat#a?b': '/v1/chat',
      'http://u:p@evil.example/x?q=1': 'http://evil.example/x',
      'https://u:p/w@evil.example/x': 'https://evil.example/x',
      '//u:p@evil.example/x': '//evil.example/x',
      'http://admin:s3cr?et@evil.example/x': 'http://evil.example/x',
      'http://admin:s3cr#et@evil.example/x': 'http://evil.example/x',
      '//admin:pa?ss@evil.example/x': '//evil.example/x',
      'http://evil.example/v1/bots/b': 'http://evil.example/v1/bots/b',
      '/v1/bots/me@example.com': '/v1/bots/me@example.com',
      '*': '*',
      '?authorization=x': '-',
      '': '-',
    };
    for (const [target, logged] of Object.entries(cases)) assert.equal(targetForLog(target), logged, target);
    assert.equal(targetForLog(`/${'a'.repeat(300)}`), `/${'a'.repeat(255)}…`);
    assert.equal(targetForLog(`/${'a'.repeat(255)}`).length, 256, 'up to the bound, nothing is cut');
  });
});
