/**
 * Preloaded into a benchmarked server process (`node --expose-gc --import <this> server.js`):
 * on the IPC message `'gc'` it runs full garbage collections and answers with the process's
 * memory figures, so RSS is read with no collectable garbage left in the heap. It adds one IPC
 * listener and nothing on the datagram path.
 */
process.on('message', (message) => {
  if (message !== 'gc') return;
  const gc = (globalThis as { gc?: () => void }).gc;
  // Two passes: the first may only finalize weak objects that the second then frees.
  gc?.();
  gc?.();
  const usage = process.memoryUsage();
  process.send?.({
    type: 'gc-done',
    collected: gc !== undefined,
    rss: usage.rss,
    heapUsed: usage.heapUsed,
    heapTotal: usage.heapTotal,
    external: usage.external,
  });
});
