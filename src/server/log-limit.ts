import type { Logger } from 'pino';

/**
 * Lines per second the shell writes for one kind of event (one `msg`, e.g. `member refused`).
 * A lobby fills at a few lines a second; a flood of forged registrations would otherwise
 * write a line per datagram (~20 MB/s of JSON at 100,000 datagrams/s).
 */
export const LOG_LINES_PER_SECOND = 50;

const WINDOW_MS = 1000;

export interface LogLimiterOptions {
  /** Per kind (`msg`) and second. Default `LOG_LINES_PER_SECOND`. */
  readonly linesPerSecond?: number;
  /** Milliseconds on a monotonic clock. Default `performance.now`. */
  readonly now?: () => number;
}

interface Window {
  start: number;
  lines: number;
  suppressed: number;
}

/**
 * Writes `info` lines through a pino logger, at most `linesPerSecond` per kind (the line's
 * `msg`) in any one-second window. Lines past that are counted, not written; when the window
 * ends, one `log lines suppressed` line says how many of which kind were dropped (at once if
 * the next line of that kind comes later, else from a timer at the window's end).
 */
export class LogLimiter {
  readonly #logger: Logger;
  readonly #limit: number;
  readonly #now: () => number;
  readonly #windows = new Map<string, Window>();
  #timer: NodeJS.Timeout | undefined;

  constructor(logger: Logger, options: LogLimiterOptions = {}) {
    this.#logger = logger;
    this.#limit = options.linesPerSecond ?? LOG_LINES_PER_SECOND;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Whether `info` lines are written at all (else callers can skip building fields). */
  get enabled(): boolean {
    return this.#logger.isLevelEnabled('info');
  }

  info(fields: Record<string, unknown>, msg: string): void {
    if (!this.enabled) return;
    const now = this.#now();
    let window = this.#windows.get(msg);
    if (window === undefined) {
      window = { start: now, lines: 0, suppressed: 0 };
      this.#windows.set(msg, window);
    } else if (now - window.start >= WINDOW_MS) {
      this.#summarise(msg, window);
      window.start = now;
      window.lines = 0;
    }
    if (window.lines < this.#limit) {
      window.lines++;
      this.#logger.info(fields, msg);
      return;
    }
    window.suppressed++;
    if (window.suppressed === 1) this.#schedule(window.start + WINDOW_MS - now);
  }

  /** Writes the summary of every window that suppressed lines, and forgets the windows. */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const [msg, window] of this.#windows) this.#summarise(msg, window);
    this.#windows.clear();
  }

  #summarise(msg: string, window: Window): void {
    if (window.suppressed === 0) return;
    this.#logger.info(
      { kind: msg, suppressed: window.suppressed, limitPerSecond: this.#limit },
      'log lines suppressed',
    );
    window.suppressed = 0;
  }

  #schedule(delayMs: number): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        const now = this.#now();
        for (const [msg, window] of this.#windows) {
          if (now - window.start >= WINDOW_MS) {
            this.#summarise(msg, window);
            this.#windows.delete(msg);
          } else if (window.suppressed > 0) {
            this.#schedule(window.start + WINDOW_MS - now);
          }
        }
      },
      Math.max(1, Math.ceil(delayMs)),
    );
    this.#timer.unref();
  }
}
