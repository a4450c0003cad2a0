/** Reconnect delays: exponential backoff with full jitter (pure; tested with values). */

export interface BackoffOptions {
  /** First delay in ms (1000). */
  initialDelay: number;
  /** Growth per attempt (1.5). */
  factor: number;
  /** Cap in ms (30000). */
  maxDelay: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialDelay: 1000, factor: 1.5, maxDelay: 30000 };

/** The ceiling for attempt n (0-based): initialDelay × factorⁿ, capped at maxDelay. */
export function backoffCeiling(attempt: number, o: BackoffOptions = DEFAULT_BACKOFF): number {
  return Math.min(o.maxDelay, o.initialDelay * Math.pow(o.factor, Math.max(0, attempt)));
}

/** Full jitter: uniform in [0, ceiling). */
export function backoffDelay(attempt: number, random: () => number, o: BackoffOptions = DEFAULT_BACKOFF): number {
  return Math.floor(random() * backoffCeiling(attempt, o));
}

/**
 * After 4029 (too many connections) or 4030 (rate limit) the client waits longer: uniform in
 * [maxDelay / 2, maxDelay), whatever the attempt.
 */
export function penaltyDelay(random: () => number, o: BackoffOptions = DEFAULT_BACKOFF): number {
  return Math.floor(o.maxDelay / 2 + random() * (o.maxDelay / 2));
}
