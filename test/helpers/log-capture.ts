/**
 * @module test/helpers/log-capture
 * A real logger whose JSON lines the test reads back: every line, or the access log's only.
 */
import { PassThrough } from 'node:stream';
import { createLogger, type Logger } from '../../src/util/logger.ts';

export interface CapturedLog {
  readonly logger: Logger;
  /** Everything written so far, as text. */
  text(): string;
  /** Every line so far, parsed. */
  lines(): Array<Record<string, unknown>>;
  /** The access log's lines (module 'access'). */
  access(): Array<Record<string, unknown>>;
}

export function captureLog(level: Parameters<typeof createLogger>[0] = 'info'): CapturedLog {
  let text = '';
  const sink = new PassThrough();
  sink.on('data', (d: Buffer) => (text += d.toString()));
  const lines = () => text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger: createLogger(level, sink), text: () => text, lines, access: () => lines().filter((l) => l.module === 'access') };
}
