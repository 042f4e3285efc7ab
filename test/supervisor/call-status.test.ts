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
    expect(window).toEqual({ finished: 3, withinTarget: 1, share: 1 / 3 });
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
    ).toEqual({ finished: 1, withinTarget: 0, share: 0 });
    expect(deliveryWindowOf([], SINCE_MS, TARGET_MS)).toEqual({ finished: 0, withinTarget: 0, share: null });
  });
});
