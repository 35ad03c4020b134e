import { TokenMintError, type CozeToken } from './token-client.js';

export interface MintBreakerOptions {
  /** Hold after the first failed mint; doubles with each failure in a row. */
  baseHoldMs: number;
  maxHoldMs: number;
  now?: () => number;
  /** Called when a mint is refused without reaching Coze. */
  onHeld?: () => void;
}

/**
 * A failed mint (Coze down, 5xx after retries, invalid_client) is almost never about one
 * session: it is the app or the endpoint. Without a hold, every request of every user would go
 * on asking the token endpoint during an outage. After a failure, new mints fail at once with
 * the same error for a hold that doubles up to `maxHoldMs`; once it passes, one mint is let
 * through as a probe, and a success closes the breaker. Cached tokens are served throughout.
 */
export function createMintBreaker(mint: (sessionName: string) => Promise<CozeToken>, options: MintBreakerOptions): (sessionName: string) => Promise<CozeToken> {
  const now = options.now ?? Date.now;
  let failuresInRow = 0;
  let heldUntil = 0;
  let probing = false;
  let lastError: TokenMintError | undefined;

  return async (sessionName) => {
    if (lastError && (now() < heldUntil || probing)) {
      options.onHeld?.();
      const seconds = Math.max(1, Math.ceil((heldUntil - now()) / 1000));
      throw new TokenMintError({
        outcome: lastError.outcome,
        ...(lastError.errorCode ? { errorCode: lastError.errorCode } : {}),
        attempts: 0,
        message: `${lastError.message} (held: the token endpoint failed moments ago; next attempt in about ${seconds} s)`,
      });
    }
    // Once the hold has passed, the first mint is the probe; the others wait for its verdict.
    const isProbe = lastError !== undefined;
    if (isProbe) probing = true;
    try {
      const token = await mint(sessionName);
      failuresInRow = 0;
      lastError = undefined;
      return token;
    } catch (err) {
      if (err instanceof TokenMintError) {
        failuresInRow += 1;
        lastError = err;
        heldUntil = now() + Math.min(options.maxHoldMs, options.baseHoldMs * 2 ** (failuresInRow - 1));
      }
      throw err;
    } finally {
      if (isProbe) probing = false;
    }
  };
}
