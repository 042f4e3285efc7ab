import { describe, expect, it } from 'vitest';
import { deliveryWindowOf } from '../../src/supervisor/call-status.ts';

const TARGET_MS = 30_000;
const SINCE_MS = 1_000_000;

describe('deliveryWindowOf', () => {
  it('counts deliveries in the window by acknowledgement, within target up to exactly the target', () => {
    const window = deliveryWindowOf(
      [
        { endedAtMs: SINCE_MS, callDataAcknowledgedAtMs: SINCE_MS + TARGET_MS, failedAtMs: null },
        { endedAtMs: SINCE_MS, callDataAcknowledgedAtMs: SINCE_MS + TARGET_MS + 1, failedAtMs: null },
        // acknowledged before the window: not this window's
        { endedAtMs: SINCE_MS - 5, callDataAcknowledgedAtMs: SINCE_MS - 1, failedAtMs: null },
        // failed, then retried and delivered: counted once, by its delivery
        { endedAtMs: SINCE_MS, callDataAcknowledgedAtMs: SINCE_MS + 60_000, failedAtMs: SINCE_MS + 10 },
      ],
      SINCE_MS,
      TARGET_MS,
    );
    expect(window).toEqual({
      finished: 3,
      withinTarget: 1,
      share: 1 / 3,
      // 30, 30.001 and 60 s: nearest rank
      latencySeconds: { p50: 30.001, p95: 60, p99: 60 },
    });
  });

  it('counts a failure in the window as finished and never within target; nothing finished is share null', () => {
    expect(
      deliveryWindowOf(
        [
          { endedAtMs: SINCE_MS, callDataAcknowledgedAtMs: null, failedAtMs: SINCE_MS + 1 },
          { endedAtMs: SINCE_MS, callDataAcknowledgedAtMs: null, failedAtMs: SINCE_MS - 1 },
        ],
        SINCE_MS,
        TARGET_MS,
      ),
    ).toEqual({ finished: 1, withinTarget: 0, share: 0, latencySeconds: null });
    expect(deliveryWindowOf([], SINCE_MS, TARGET_MS)).toEqual({
      finished: 0,
      withinTarget: 0,
      share: null,
      latencySeconds: null,
    });
  });

  it('gives end → CRM percentiles by nearest rank over the deliveries', () => {
    const times = Array.from({ length: 100 }, (_, index) => ({
      endedAtMs: SINCE_MS,
      callDataAcknowledgedAtMs: SINCE_MS + (index + 1) * 1_000,
      failedAtMs: null,
    }));
    expect(deliveryWindowOf(times, SINCE_MS, TARGET_MS).latencySeconds).toEqual({
      p50: 50,
      p95: 95,
      p99: 99,
    });
  });
});
