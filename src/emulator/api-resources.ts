import { ApiError, bodyOf, ok, param } from './api-context.js';
import type { ApiRoute } from './api.js';
import { newId, nowSeconds, sameOwner } from './store.js';

/** Files, user variables and bot info (Coze docs: https://www.coze.cn/open/docs/developer_guides/upload_files, read_variable, get_metadata). */
export const RESOURCE_ROUTES: readonly ApiRoute[] = [
  ['POST', /^\/v1\/files\/upload$/, (ctx) => {
    if (!ctx.upload) throw new ApiError(4300, 'the upload holds no file part');
    const stored = { id: newId(), owner: ctx.owner, file_name: ctx.upload.fileName, bytes: ctx.upload.bytes, created_at: nowSeconds() };
    ctx.store.files.set(stored.id, stored);
    ok(ctx, { id: stored.id, bytes: stored.bytes, file_name: stored.file_name, created_at: stored.created_at });
  }],
  ['GET', /^\/v1\/files\/retrieve$/, (ctx) => {
    const f = ctx.store.files.get(param(ctx, 'file_id') ?? '');
    if (!f) throw new ApiError(4200, 'file not found');
    if (!sameOwner(f.owner, ctx.owner)) throw new ApiError(4101, 'no permission to access this resource');
    ok(ctx, { id: f.id, bytes: f.bytes, file_name: f.file_name, created_at: f.created_at });
  }],
  ['GET|PUT', /^\/v1\/variables$/, (ctx) => {
    const source = ctx.method === 'GET' ? Object.fromEntries(ctx.query) : bodyOf(ctx);
    const botId = String(source.bot_id ?? source.app_id ?? '');
    const uid = source.connector_uid;
    if (!botId || typeof uid !== 'string' || uid === '') throw new ApiError(4000, 'bot_id (or app_id) and connector_uid are required');
    const vars = ctx.store.variablesFor(ctx.owner, botId, uid);
    if (ctx.method === 'PUT') {
      for (const item of (bodyOf(ctx).data ?? []) as Array<Record<string, unknown>>) vars.set(String(item.keyword), String(item.value));
      return ok(ctx, {});
    }
    const keywords = param(ctx, 'keywords')?.split(',');
    const at = nowSeconds();
    ok(ctx, { items: [...vars].filter(([k]) => !keywords || keywords.includes(k)).map(([keyword, value]) => ({ keyword, value, create_time: at, update_time: at })) });
  }],
  ['GET', /^\/v1\/bots\/([^/]+)$/, (ctx, m) => ok(ctx, botInfo(m[1] as string))],
  ['GET', /^\/v1\/bot\/get_online_info$/, (ctx) => ok(ctx, botInfo(param(ctx, 'bot_id') ?? ''))],
];

function botInfo(botId: string) {
  return { bot_id: botId, name: `Emulated bot ${botId}`, description: 'A bot served by the Coze emulator', version: '1', onboarding_info: { prologue: 'Hello!' } };
}
