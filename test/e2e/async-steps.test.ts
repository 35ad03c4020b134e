/**
 * The one request path, its slow shape (issue 17, item 2): every e2e case that runs the real
 * gateway in this process runs again here with every request step chained later, as if each had
 * waited for I/O (DEFERRED_STEPS, src/maybe.ts). Their own files run them with the production
 * chaining, where a cached request goes from the socket to the forwarder synchronously
 * (test/e2e/cached-path-sync.test.ts proves that it does). The same step functions serve both,
 * so the same assertions must hold both ways.
 */
import { deferEveryStep } from '../helpers/stack.js';

deferEveryStep();

const CASES = [
  './proxy.test.ts',
  './websocket.test.ts',
  './websocket-handshake.test.ts',
  './websocket-close-codes.test.ts',
  './websocket-silent-coze.test.ts',
  './websocket-dial-during-drain.test.ts',
  './websocket-client-leaves-during-admission.test.ts',
  './sdk-routes.test.ts',
  './sdk-isolation.test.ts',
  './lossless-body.test.ts',
  './upstream-failures.test.ts',
  './token-vending.test.ts',
  './api-key-reload.test.ts',
  './metrics.test.ts',
  './credential-failure-code.test.ts',
  './credential-missing-hint.test.ts',
  './mint-failure-reason.test.ts',
  './emulator-fidelity.test.ts',
  './usage-counting.test.ts',
  './budgets.test.ts',
  './limits-per-session.test.ts',
  './coze-hooks.test.ts',
  '../faults/upstream-streams.test.ts',
];
for (const file of CASES) await import(file);
