import { LRUCache } from 'lru-cache';
import { TokenMintError, type CozeToken, type MintOutcome } from './token-client.js';

export interface MintBreakerOptions {
  /** Hold after the first failed mint; doubles with each failure in a row. */
  baseHoldMs: number;
  maxHoldMs: number;
  now?: () => number;
  /** Called when a mint is refused without reaching Coze. */
  onHeld?: () => void;
}

export interface MintBreaker {
  /** Mints the token of `key`, or fails at once with the error of the hold in force. */
  mint(key: string): Promise<CozeToken>;
  /**
   * The error a mint of `key` would fail with now, without reaching Coze (counted as held), or
   * undefined when it may go. The token cache asks before it takes a Redis lock, so a hold
   * costs no round trip.
   */
  refusal(key: string): TokenMintError | undefined;
}

/**
 * Refusals that can be about the request rather than the app (a custom_consumer or session_name
 * Coze will not take, an error_code we do not know): they hold that key only, until this many
 * keys in a row have failed so, which is the app.
 */
const KEY_OUTCOMES: ReadonlySet<MintOutcome> = new Set(['invalid_request', 'other_error']);
const KEYS_IN_ROW_FOR_APP = 3;
const MAX_HELD_KEYS = 10_000;

interface Hold {
  failuresInRow: number;
  heldUntil: number;
  lastError: TokenMintError;
}

/**
 * A failed mint (Coze down, 5xx after retries, invalid_client) is almost never about one
 * session: it is the app or the endpoint. Without a hold, every request of every user would go
 * on asking the token endpoint during an outage. After a failure, new mints fail at once with
 * the same error for a hold that doubles up to `maxHoldMs`; once it passes, one mint is let
 * through as a probe, and a success closes the breaker. Cached tokens are served throughout.
 *
 * A refusal that may be about one request holds that key alone: one user whose claims make a
 * token request Coze refuses must not hold every other user's mints.
 */
export function createMintBreaker(mint: (key: string) => Promise<CozeToken>, options: MintBreakerOptions): MintBreaker {
  const now = options.now ?? Date.now;
  let app: Hold | undefined;
  let probing = false;
  const keys = new LRUCache<string, Hold>({ max: MAX_HELD_KEYS });
  let keysFailedInRow = new Set<string>();

  const holdFor = (failuresInRow: number) => Math.min(options.maxHoldMs, options.baseHoldMs * 2 ** (failuresInRow - 1));
  const nextHold = (previous: Hold | undefined, err: TokenMintError): Hold => {
    const failuresInRow = (previous?.failuresInRow ?? 0) + 1;
    return { failuresInRow, heldUntil: now() + holdFor(failuresInRow), lastError: err };
  };

  function held(hold: Hold, whose: string): TokenMintError {
    const { lastError } = hold;
    const seconds = Math.max(1, Math.ceil((hold.heldUntil - now()) / 1000));
    return new TokenMintError({
      outcome: lastError.outcome,
      ...(lastError.errorCode ? { errorCode: lastError.errorCode } : {}),
      attempts: 0,
      message: `${lastError.message} (held: ${whose} failed moments ago; next attempt in about ${seconds} s)`,
    });
  }

  function refusal(key: string): TokenMintError | undefined {
    let hold: Hold | undefined;
    let whose = 'the token endpoint';
    // Once the hold has passed, the first mint is the probe; the others, while it runs, are refused
    // at once with the held 502 token-mint-failed (they do not wait for it), so a failing endpoint
    // is asked once, not once per caller.
    if (app && (now() < app.heldUntil || probing)) hold = app;
    else {
      const own = keys.get(key);
      if (own && now() < own.heldUntil) [hold, whose] = [own, "this session's token request"];
    }
    if (!hold) return undefined;
    options.onHeld?.();
    return held(hold, whose);
  }

  function failed(key: string, err: TokenMintError): void {
    if (KEY_OUTCOMES.has(err.outcome)) {
      keysFailedInRow.add(key);
      if (keysFailedInRow.size < KEYS_IN_ROW_FOR_APP) {
        keys.set(key, nextHold(keys.get(key), err));
        return;
      }
    }
    app = nextHold(app, err);
  }

  return {
    refusal,
    async mint(key) {
      const refused = refusal(key);
      if (refused) throw refused;
      const isProbe = app !== undefined;
      if (isProbe) probing = true;
      try {
        const token = await mint(key);
        app = undefined;
        keys.delete(key);
        if (keysFailedInRow.size > 0) keysFailedInRow = new Set();
        return token;
      } catch (err) {
        if (err instanceof TokenMintError) failed(key, err);
        throw err;
      } finally {
        if (isProbe) probing = false;
      }
    },
  };
}
