// A local module of the worker, with its own WASI imports at 0.2.12 and 0.2.4.
import { subscribeDuration } from 'wasi:clocks/monotonic-clock@0.2.12';
import { poll } from 'wasi:io/poll@0.2.4';

const SECOND = 1_000_000_000n;

/** Waits up to a second for `pollable`; true when it is ready. */
export function readyWithinASecond(pollable) {
  return poll([pollable, subscribeDuration(SECOND)]).includes(0);
}
