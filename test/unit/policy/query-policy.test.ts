import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../../../src/errors.js';
import { ENDPOINTS, type Endpoint } from '../../../src/policy/endpoints.js';
import { createFieldRules } from '../../../src/policy/field-policy.js';
import { parseQuery } from '../../../src/policy/query-policy.js';

const endpoint = (name: string) => ENDPOINTS.find((e) => e.name === name) as Endpoint;
const rule = (name: string, options = {}) => createFieldRules(endpoint(name), { enforceUserId: true, allowDrafts: false, botInfo: 'display', allowedBotIds: ['b1'], ...options }).rewriteQuery;
const ambiguous = (err: unknown) => err instanceof GatewayError && err.reason === 'ambiguous-field';

describe('query policy', () => {
  it('reads names as a decoder does, and takes the credential out in any letter case', () => {
    assert.deepEqual(parseQuery(''), { raw: '', pairs: [], credentials: [] });
    const q = parseQuery('a=1&authorization=Bearer%20x&page%5Fsize=2&&AUTHORIZATION=y');
    assert.deepEqual(q.credentials, ['Bearer x', 'y']);
    assert.deepEqual(q.pairs.map((p) => [p.raw, p.name, p.value]), [['a=1', 'a', '1'], ['page%5Fsize=2', 'page_size', '2']]);
  });

  it('refuses a controlled name that is encoded, in another case, or repeated', () => {
    for (const raw of ['%61uthorization=x', 'user%5Fid=bob', '%62ot_id=1', 'Bot_Id=1', 'BOT_ID=1', 'bot_id=1&bot_id=2', 'is_published=true&is_published=false', 'app_id=1&App_Id=2', 'u%C5%BFer_id=bob', 'uſer_id=bob']) {
      assert.throws(() => parseQuery(raw), ambiguous, raw);
    }
    assert.equal(parseQuery('botid=1&bot-id=2&bot_ids=3').pairs.length, 3, 'other names are not controlled');
  });

  it('forces declared identity fields, refuses the others, keeps every other pair byte for byte', () => {
    const get = rule('variables.get');
    assert.equal(get(parseQuery('bot_id=b1&connector_uid=bob&keywords=a%2Cb'), {}, 'alice|x'), 'bot_id=b1&connector_uid=alice%7Cx&keywords=a%2Cb');
    assert.equal(get(parseQuery('bot_id=b1'), {}, 'alice'), 'bot_id=b1&connector_uid=alice');
    assert.throws(() => get(parseQuery('bot_id=b1&user_id=bob'), {}, 'alice'), (err: unknown) => err instanceof GatewayError && err.reason === 'identity-in-query');
    const list = rule('conversation.list');
    assert.equal(list(parseQuery('bot_id=b1&x=%20+'), {}, 'alice'), 'bot_id=b1&x=%20+', 'an unchanged query is forwarded as sent');
    assert.equal(list(parseQuery('authorization=Bearer%20x&bot_id=b1'), {}, 'alice'), 'bot_id=b1');
    for (const field of ['user_id', 'connector_uid', 'uid']) {
      assert.throws(() => list(parseQuery(`${field}=bob`), {}, 'alice'), (err: unknown) => err instanceof GatewayError && err.reason === 'identity-in-query');
    }
  });

  it('checks ids of the query and of path parameters, drafts and entities', () => {
    const bot = rule('bot.retrieve');
    assert.throws(() => bot(parseQuery(''), { bot_id: 'b2' }, 'alice'), (err: unknown) => err instanceof GatewayError && err.reason === 'bot-forbidden');
    assert.throws(() => bot(parseQuery('bot_id=b2'), { bot_id: 'b1' }, 'alice'), (err: unknown) => err instanceof GatewayError && err.reason === 'bot-forbidden', 'both the path and the query are checked');
    assert.throws(() => bot(parseQuery('is_published=false'), { bot_id: 'b1' }, 'alice'), (err: unknown) => err instanceof GatewayError && err.reason === 'draft-forbidden');
    assert.equal(bot(parseQuery('is_published=true'), { bot_id: 'b1' }, 'alice'), 'is_published=true');
    assert.equal(rule('bot.retrieve', { allowDrafts: true })(parseQuery('is_published=false'), { bot_id: 'b1' }, 'alice'), 'is_published=false');
    const speech = rule('ws.audio.speech', { allowedWorkflowIds: ['w1'] });
    assert.equal(speech(parseQuery('entity_type=workflow&entity_id=w1'), {}, 'alice'), 'entity_type=workflow&entity_id=w1');
    assert.throws(() => speech(parseQuery('entity_type=workflow&entity_id=w2'), {}, 'alice'), (err: unknown) => err instanceof GatewayError && err.reason === 'workflow-forbidden');
    assert.throws(() => speech(parseQuery('entity_id=w1'), {}, 'alice'), ambiguous);
  });
});
