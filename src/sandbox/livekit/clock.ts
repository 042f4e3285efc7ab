/**
 * Time as the emulator reports it. The clock is injectable so tests can pin timestamps and
 * recording lengths; timers (activation, finalisation, departure) still run on real time.
 *
 * LiveKit mixes units on the wire: egress times are Unix nanoseconds, room creation, join and
 * webhook times are Unix seconds. Each conversion lives here so no caller multiplies by hand.
 */

/** Milliseconds since the Unix epoch, like `Date.now`. */
export type Clock = () => number;

const NANOS_PER_MILLI = 1_000_000n;

export function unixNanos(epochMs: number): bigint {
  return BigInt(Math.round(epochMs)) * NANOS_PER_MILLI;
}

export function unixSeconds(epochMs: number): bigint {
  return BigInt(Math.floor(epochMs / 1000));
}

export function unixMillis(epochMs: number): bigint {
  return BigInt(Math.round(epochMs));
}

export function secondsToNanos(seconds: number): bigint {
  return BigInt(Math.round(seconds * 1e9));
}
