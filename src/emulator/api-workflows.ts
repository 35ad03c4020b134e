import { ApiError, bodyOf, ok, type ApiContext, type Json } from './api-context.js';
import type { ApiRoute } from './api.js';
import { workflowEvent, writeStream } from './sse.js';
import { newId, nowSeconds, sameOwner, type WorkflowExecution } from './store.js';

/**
 * Workflow runs (Coze docs: https://www.coze.cn/open/docs/developer_guides/workflow_run, workflow_stream_run): sync, async and streamed
 * runs, Interrupt and resume, and the run history of each execution.
 */
export const WORKFLOW_ROUTES: readonly ApiRoute[] = [
  ['POST', /^\/v1\/workflow\/run$/, (ctx) => {
    const body = bodyOf(ctx);
    const workflowId = String(body.workflow_id ?? '');
    if (ctx.settings.workflow(workflowId) === 'error') throw new ApiError(WORKFLOW_ERROR.error_code, WORKFLOW_ERROR.error_message);
    const async = body.is_async === true;
    const large = ctx.settings.workflow(workflowId) === 'large';
    const run = record(ctx, workflowId, body, async ? 2 : 0, { output: large ? `ran ${workflowId} `.padEnd(65_536, '.') : `ran ${workflowId}`, user_id: userOf(body) });
    // An async run answers with its execute_id only; its result and usage are read from the run
    // history (workflow_run page, both examples).
    if (async) ok(ctx, undefined, { execute_id: run.execute_id, debug_url: debugUrl(run) });
    else ok(ctx, run.output, { execute_id: run.execute_id, debug_url: debugUrl(run), usage: run.usage, token: run.usage.token_count, cost: '0' });
  }],
  ['POST', /^\/v1\/workflow\/stream_run$/, (ctx) => {
    const body = bodyOf(ctx);
    const workflowId = String(body.workflow_id ?? '');
    const run = record(ctx, workflowId, body, 1, { output: `ran ${workflowId}`, user_id: userOf(body) });
    return streamRun(ctx, run, ['Hello', ' from', ' the workflow'], userOf(body));
  }],
  ['POST', /^\/v1\/workflow\/stream_resume$/, (ctx) => {
    const { run, resumeData } = resume(ctx);
    return streamRun(ctx, run, [`Resumed with: ${resumeData}`], run.connector_uid, 'echo');
  }],
  ['POST', /^\/v1\/workflows\/resume$/, (ctx) => {
    const { run, resumeData } = resume(ctx);
    run.output = JSON.stringify({ output: `Resumed with: ${resumeData}` });
    ok(ctx, run.output, { execute_id: run.execute_id, debug_url: debugUrl(run), usage: run.usage });
  }],
  ['GET', /^\/v1\/workflows\/([^/]+)\/run_histories\/([^/]+)$/, (ctx, m) => {
    const run = ownedRun(ctx, m[1], m[2]);
    ok(ctx, [
      {
        execute_id: run.execute_id,
        execute_status: run.status,
        bot_id: run.bot_id,
        connector_id: '1024',
        connector_uid: run.connector_uid,
        run_mode: run.run_mode,
        logid: ctx.logId,
        create_time: run.create_time,
        update_time: run.update_time,
        output: run.output,
        token: String(run.usage.token_count),
        cost: '0',
        error_code: '',
        error_message: '',
        debug_url: debugUrl(run),
        is_output_trimmed: false,
        usage: run.usage,
        node_execute_status: Object.fromEntries(
          [...run.nodes.keys()].map((uuid) => [uuid, { node_id: 'output', is_finish: true, update_time: run.update_time, node_execute_uuid: uuid }]),
        ),
      },
    ]);
  }],
  ['GET', /^\/v1\/workflows\/([^/]+)\/run_histories\/([^/]+)\/execute_nodes\/([^/]+)$/, (ctx, m) => {
    const output = ownedRun(ctx, m[1], m[2]).nodes.get(m[3] as string);
    if (output === undefined) throw new ApiError(4200, 'node execution not found');
    ok(ctx, { is_finish: true, node_output: output });
  }],
];

/** The Error a failing workflow ends with, as PY's recorded stream shows it. */
export const WORKFLOW_ERROR = { error_code: 4000, error_message: 'Request parameter error' } as const;

function userOf(body: Json): string {
  const ext = body.ext;
  return typeof ext === 'object' && ext !== null && typeof (ext as Json).user_id === 'string' ? ((ext as Json).user_id as string) : '';
}

function debugUrl(run: WorkflowExecution): string {
  return `https://www.coze.cn/work_flow?execute_id=${run.execute_id}&workflow_id=${run.workflow_id}`;
}

function record(ctx: ApiContext, workflowId: string, body: Json, runMode: 0 | 1 | 2, output: Json): WorkflowExecution {
  const at = nowSeconds();
  const text = JSON.stringify(output);
  const run: WorkflowExecution = {
    execute_id: newId(),
    workflow_id: workflowId,
    owner: ctx.owner,
    bot_id: String(body.bot_id ?? ''),
    connector_uid: userOf(body),
    run_mode: runMode,
    status: 'Success',
    output: text,
    create_time: at,
    update_time: at,
    usage: { token_count: 2 + text.length, output_count: text.length, input_count: 2 },
    nodes: new Map([[newId(), text]]),
  };
  ctx.store.executions.set(run.execute_id, run);
  return run;
}

/** `id: n` / `event: X` / `data: {...}` with spaces, ids from 0 (as in the workflow streams recorded in coze-py's tests/testdata). */
function streamRun(ctx: ApiContext, run: WorkflowExecution, pieces: string[], userId: string, forced?: 'echo'): Promise<void> {
  const behaviour = forced ?? ctx.settings.workflow(run.workflow_id);
  const nodeUuid = [...run.nodes.keys()][0] as string;
  const events: Array<[string, unknown]> = [];
  pieces.forEach((content, i) => {
    const last = i === pieces.length - 1 && behaviour !== 'interrupt' && behaviour !== 'error';
    events.push(['Message', { content, node_title: 'End', node_seq_id: String(i), node_is_finish: last, node_execute_uuid: nodeUuid, ext: { user_id: userId }, ...(last ? { usage: run.usage } : {}) }]);
    if (behaviour === 'ping' && !last) events.push(['PING', {}]);
  });
  if (behaviour === 'interrupt') {
    const eventId = `${run.execute_id}/${newId()}`;
    ctx.store.interrupts.set(eventId, { event_id: eventId, workflow_id: run.workflow_id, execute_id: run.execute_id, type: 2, owner: ctx.owner });
    run.status = 'Running';
    events.splice(1);
    events.push(['Interrupt', { interrupt_data: { event_id: eventId, type: 2, data: '' }, node_title: 'Question' }]);
  } else if (behaviour === 'error') {
    run.status = 'Fail';
    events.splice(1);
    events.push(['Error', { ...WORKFLOW_ERROR }]);
  } else {
    // `data: {}`, as in the stream recorded in coze-py's tests/testdata.
    events.push(['Done', {}]);
  }
  const frames = events.map(([event, data], id) => workflowEvent(id, event, data));
  return writeStream(ctx.res, frames, { pacing: ctx.pacing, logId: ctx.logId, fault: ctx.fault });
}

function resume(ctx: ApiContext): { run: WorkflowExecution; resumeData: string } {
  const body = bodyOf(ctx);
  const interrupt = ctx.store.interrupts.get(String(body.event_id ?? ''));
  if (!interrupt || interrupt.workflow_id !== String(body.workflow_id ?? '')) throw new ApiError(4314, 'execution record not found');
  if (!sameOwner(interrupt.owner, ctx.owner)) throw new ApiError(4101, 'no permission to access this resource');
  if (Number(body.interrupt_type) !== interrupt.type) throw new ApiError(4000, 'interrupt_type does not match the interrupt');
  ctx.store.interrupts.delete(interrupt.event_id);
  const run = ctx.store.executions.get(interrupt.execute_id) as WorkflowExecution;
  run.status = 'Success';
  run.update_time = nowSeconds();
  return { run, resumeData: String(body.resume_data ?? '') };
}

/** Run history is the caller's own: another session's execute_id is 4101 (Coze's own scoping of run history is not documented). */
function ownedRun(ctx: ApiContext, workflowId: string | undefined, executeId: string | undefined): WorkflowExecution {
  const run = ctx.store.executions.get(executeId ?? '');
  if (!run || run.workflow_id !== workflowId) throw new ApiError(4314, 'execution record not found');
  if (!sameOwner(run.owner, ctx.owner)) throw new ApiError(4101, 'no permission to access this resource');
  return run;
}
