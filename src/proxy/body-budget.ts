/**
 * The memory set aside for request bodies the gateway holds (server.bufferedBodyBudgetBytes):
 * JSON bodies are read whole, checked and kept for one replay, so without a bound across
 * requests a few slow uploads that stop just short of their declared length pin it all
 * (issue 15, finding 9). A body takes its declared length up front, or chunk by chunk when the
 * length is not declared, and gives it back when its request ends.
 */
export interface BodyBudget {
  /** Reserves `bytes`; false (and nothing reserved) when they do not fit. */
  take(bytes: number): boolean;
  give(bytes: number): void;
  /** Bytes reserved now. */
  readonly inUse: number;
}

export function createBodyBudget(totalBytes: number, onChange: (inUse: number) => void = () => undefined): BodyBudget {
  let inUse = 0;
  return {
    take(bytes) {
      if (inUse + bytes > totalBytes) return false;
      inUse += bytes;
      onChange(inUse);
      return true;
    },
    give(bytes) {
      inUse = Math.max(0, inUse - bytes);
      onChange(inUse);
    },
    get inUse() {
      return inUse;
    },
  };
}
