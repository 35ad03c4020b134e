import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMintBreaker } from '../../../src/coze/mint-breaker.js';
import { TokenMintError, type CozeToken, type MintOutcome } from '../../../src/coze/token-client.js';
import { createFakeClock } from '../../helpers/clock.js';

type Failure = Exclude<MintOutcome, 'success'>;

/** A mint that fails for the keys in `failing` with their outcome, and counts what reached it. */
function setUp() {
  const clock = createFakeClock(Date.now());
  const failing = new Map<string, Failure>();
  const reached: string[] = [];
  let held = 0;
  const breaker = createMintBreaker(
    async (key): Promise<CozeToken> => {
      reached.push(key);
      const outcome = failing.get(key);
      if (outcome) throw new TokenMintError({ outcome, attempts: 1, message: `refused (${outcome})` });
      return { accessToken: `czs_${key}`, expiresAt: Math.floor(clock.now() / 1000) + 900 };
    },
    { baseHoldMs: 1000, maxHoldMs: 30_000, now: clock.now, onHeld: () => (held += 1) },
  );
  return { clock, failing, reached, breaker, held: () => held };
}

const outcomeOf = (err: unknown) => (err instanceof TokenMintError ? err.outcome : undefined);

describe('mint breaker', () => {
  it('holds every mint after a failure of the endpoint, then lets one probe through', async () => {
    const { clock, failing, reached, breaker, held } = setUp();
    failing.set('a', 'server_error');
    await assert.rejects(breaker.mint('a'));
    assert.equal(outcomeOf(breaker.refusal('b')), 'server_error');
    await assert.rejects(breaker.mint('b'), /held: the token endpoint failed moments ago/);
    assert.deepEqual(reached, ['a']);
    assert.equal(held(), 2);

    clock.advance(1000);
    assert.equal(breaker.refusal('b'), undefined);
    assert.equal((await breaker.mint('b')).accessToken, 'czs_b');
    assert.equal(breaker.refusal('c'), undefined);
  });

  it("holds only the key whose request Coze refused, so one user's claims cannot hold everyone", async () => {
    const { clock, failing, reached, breaker } = setUp();
    failing.set('mallory', 'invalid_request');
    await assert.rejects(breaker.mint('mallory'));
    assert.equal((await breaker.mint('alice')).accessToken, 'czs_alice');
    await assert.rejects(breaker.mint('mallory'), /held: this session's token request failed moments ago/);
    assert.deepEqual(reached, ['mallory', 'alice']);

    clock.advance(1000);
    await assert.rejects(breaker.mint('mallory'), /refused \(invalid_request\)/);
    clock.advance(1000); // the key's hold doubled to 2 s
    assert.equal(outcomeOf(breaker.refusal('mallory')), 'invalid_request');
    assert.equal(breaker.refusal('alice'), undefined);
  });

  it('takes the same refusal from several keys in a row for the app, and holds them all', async () => {
    const { failing, reached, breaker } = setUp();
    for (const key of ['k1', 'k2', 'k3']) {
      failing.set(key, 'invalid_request');
      await assert.rejects(breaker.mint(key));
    }
    await assert.rejects(breaker.mint('k4'), /held: the token endpoint/);
    assert.deepEqual(reached, ['k1', 'k2', 'k3']);
  });

  it('counts keys in a row only: a success in between starts the count again', async () => {
    const { failing, breaker } = setUp();
    failing.set('k1', 'other_error');
    failing.set('k2', 'other_error');
    failing.set('k3', 'other_error');
    await assert.rejects(breaker.mint('k1'));
    await assert.rejects(breaker.mint('k2'));
    await breaker.mint('ok');
    await assert.rejects(breaker.mint('k3'));
    assert.equal(breaker.refusal('ok2'), undefined);
  });
});
