import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Identity } from '../../../src/auth/identity.js';
import { GatewayError } from '../../../src/errors.js';
import { ENDPOINTS, USAGE_ENDPOINT, VENDING_ENDPOINT } from '../../../src/policy/endpoints.js';
import { EMPTY_OVERRIDES, parseOverrides } from '../../../src/usage/budget-overrides.js';
import { createBudgets } from '../../../src/usage/budgets.js';
import { createUsageCounter } from '../../../src/usage/usage-counter.js';
import { createUsageWindows } from '../../../src/usage/usage-windows.js';
import { createFakeClock } from '../../helpers/clock.js';

const endpoint = (name: string) => ENDPOINTS.find((e) => e.name === name) ?? assert.fail(name);
const alice = { source: 'jwt', subject: 'alice', claims: {} } as unknown as Identity;
/** Counts are kept per session_name (admit.ts), whatever the identity. */
const SESSION = 'tenant-a/alice';

function setUp(limits: { tokensPerDay?: number; tokensPerMonth?: number; requestsPerDay?: number }, overrides = EMPTY_OVERRIDES) {
  // 20:00 UTC on 30 April: the month ends in four hours.
  const clock = createFakeClock(Date.UTC(2026, 3, 30, 20, 0));
  const windows = createUsageWindows('UTC');
  const counter = createUsageCounter({ windows, syncIntervalMs: 1000, now: clock.now });
  const refused: string[] = [];
  const budgets = createBudgets({
    limits: { tokensPerDay: 0, tokensPerMonth: 0, requestsPerDay: 0, ...limits },
    overrides: () => overrides,
    counter,
    windows,
    now: clock.now,
    onRefused: (window, kind) => refused.push(`${window}/${kind}`),
  });
  return { clock, counter, budgets, refused };
}

function refusal(fn: () => void): GatewayError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof GatewayError);
    return err;
  }
  assert.fail('expected a refusal');
}

describe('budgets at admission', () => {
  it('refuses on the monthly budget with the month end as reset time', () => {
    const { counter, budgets, refused } = setUp({ tokensPerMonth: 100 });
    counter.record(SESSION, { total: 100, input: 40, output: 60 });
    const err = refusal(() => budgets.admit(endpoint('chat'), alice, SESSION));
    assert.equal(err.reason, 'budget-exceeded');
    assert.equal(err.headers['retry-after'], String(4 * 3600));
    assert.deepEqual(err.detailFields, { budget: 'tokensPerMonth', limit: 100, reset_at: '2026-05-01T00:00:00Z', reset_at_unix: Date.UTC(2026, 4, 1) / 1000 });
    assert.deepEqual(refused, ['month/tokens']);
  });

  it('budget-reset-of-the-last-window: with a daily and the monthly budget both used up, the refusal names the month, whose end is when a retry can pass', () => {
    const { clock, counter, budgets, refused } = setUp({ tokensPerDay: 50, tokensPerMonth: 100, requestsPerDay: 1 });
    // 10 May, 20:00 UTC: the day ends in four hours, the month in 21 days and four hours.
    clock.advance(10 * 86_400_000);
    counter.record(SESSION, { requests: 1, total: 100 });
    const err = refusal(() => budgets.admit(endpoint('chat'), alice, SESSION));
    assert.equal(err.detailFields?.budget, 'tokensPerMonth');
    assert.equal(err.headers['retry-after'], String(21 * 86_400 + 4 * 3600));
    assert.deepEqual(refused, ['month/tokens']);
    // A token-free endpoint is held by the daily request budget alone.
    assert.equal(refusal(() => budgets.admit(endpoint('chat.retrieve'), alice, SESSION)).detailFields?.budget, 'requestsPerDay');
  });

  it('spares token-free endpoints from token budgets but not from the request budget, and never refuses GET /gateway/usage', () => {
    const { counter, budgets } = setUp({ tokensPerDay: 10, requestsPerDay: 3 });
    counter.record(SESSION, { total: 10 });
    budgets.admit(endpoint('chat.retrieve'), alice, SESSION);
    budgets.admit(endpoint('conversation.list'), alice, SESSION);
    assert.equal(refusal(() => budgets.admit(endpoint('workflow.run'), alice, SESSION)).detailFields?.budget, 'tokensPerDay');
    assert.equal(refusal(() => budgets.admit(VENDING_ENDPOINT, alice, SESSION)).detailFields?.budget, 'tokensPerDay', 'a vended token would spend unseen tokens');
    budgets.admit(endpoint('message.list'), alice, SESSION);
    assert.equal(counter.view(SESSION).day.requests, 3, 'refusals and local endpoints are not counted');
    assert.equal(refusal(() => budgets.admit(endpoint('message.list'), alice, SESSION)).detailFields?.budget, 'requestsPerDay');
    budgets.admit(USAGE_ENDPOINT, alice, SESSION);
  });

  it('takes an override: a subject-wide entry, and one for a source that wins over it', () => {
    const overrides = parseOverrides('- subject: alice\n  tokensPerDay: 5\n- subject: alice\n  source: jwt\n  tokensPerDay: unlimited\n- subject: bob\n  requestsPerDay: 0\n');
    const { counter, budgets } = setUp({ tokensPerDay: 10 }, overrides);
    counter.record(SESSION, { total: 1000 });
    budgets.admit(endpoint('chat'), alice, SESSION);
    assert.deepEqual(budgets.limitsOf(alice), { tokensPerDay: null, tokensPerMonth: null, requestsPerDay: null });
    const apiAlice = { ...alice, source: 'api_key' } as Identity;
    assert.equal(budgets.limitsOf(apiAlice).tokensPerDay, 5);
    const bob = { ...alice, subject: 'bob' } as Identity;
    assert.equal(refusal(() => budgets.admit(endpoint('conversation.list'), bob, 'bob')).detailFields?.budget, 'requestsPerDay');
  });

  it("applies a subject's override to each of its sessions, and counts each session apart", () => {
    const overrides = parseOverrides('- subject: alice\n  requestsPerDay: 1\n');
    const { budgets } = setUp({ requestsPerDay: 10 }, overrides);
    const inTenantB = { ...alice, issuer: 'https://tenant-b.example' } as Identity;
    budgets.admit(endpoint('conversation.list'), alice, SESSION);
    assert.equal(refusal(() => budgets.admit(endpoint('conversation.list'), alice, SESSION)).detailFields?.limit, 1);
    budgets.admit(endpoint('conversation.list'), inTenantB, 'tenant-b/alice');
    assert.equal(refusal(() => budgets.admit(endpoint('conversation.list'), inTenantB, 'tenant-b/alice')).detailFields?.limit, 1);
  });

  it('uncount-frees-the-budget: a request taken back (never forwarded) frees its place, once however often it is taken back', () => {
    const { counter, budgets } = setUp({ requestsPerDay: 1 });
    const takeBack = budgets.admit(endpoint('conversation.list'), alice, SESSION);
    assert.ok(takeBack);
    takeBack();
    takeBack();
    assert.equal(counter.view(SESSION).day.requests, 0);
    budgets.admit(endpoint('conversation.list'), alice, SESSION);
    assert.equal(refusal(() => budgets.admit(endpoint('conversation.list'), alice, SESSION)).detailFields?.budget, 'requestsPerDay');
    assert.equal(budgets.admit(USAGE_ENDPOINT, alice, SESSION), undefined, 'a local endpoint counts nothing to take back');
  });

  it('uncount-stays-in-its-day: a request counted before midnight and taken back after it leaves the new day whole', () => {
    const { clock, counter, budgets } = setUp({ requestsPerDay: 1 });
    const takeBack = budgets.admit(endpoint('conversation.list'), alice, SESSION);
    clock.advance(4 * 3_600_000);
    takeBack?.();
    assert.equal(counter.view(SESSION).day.requests, 0);
    budgets.admit(endpoint('conversation.list'), alice, SESSION);
    assert.equal(refusal(() => budgets.admit(endpoint('conversation.list'), alice, SESSION)).detailFields?.budget, 'requestsPerDay', 'the new day lent no request');
  });
});
