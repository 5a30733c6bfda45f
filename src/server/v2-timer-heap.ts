/**
 * The min-heap of per-session wakeups of the v2 table (quinn-proto keeps its timers in a
 * table of their own too): pure array operations, apart from the rules that schedule them.
 */
import type { Session } from './v2-session-records.js';

export interface TimerEntry {
  readonly at: number;
  readonly session: Session;
}

export function heapPush(heap: TimerEntry[], entry: TimerEntry): void {
  heap.push(entry);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if ((heap[parent] as TimerEntry).at <= entry.at) break;
    heap[i] = heap[parent] as TimerEntry;
    i = parent;
  }
  heap[i] = entry;
}

export function heapPop(heap: TimerEntry[]): void {
  const last = heap.pop();
  if (last === undefined || heap.length === 0) return;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= heap.length) break;
    const r = l + 1;
    const c = r < heap.length && (heap[r] as TimerEntry).at < (heap[l] as TimerEntry).at ? r : l;
    if ((heap[c] as TimerEntry).at >= last.at) break;
    heap[i] = heap[c] as TimerEntry;
    i = c;
  }
  heap[i] = last;
}
