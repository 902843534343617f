/**
 * @module test/helpers/browser
 * Debian's Chromium driven by playwright-core, as the console's tests use it: the system browser by
 * path (playwright's own browser downloads do not work offline), headless, with the background
 * services that would call out to the internet switched off.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

/** The Chromium executable, or undefined when none is installed (`apt-get install chromium`). */
export function chromiumPath(): string | undefined {
  return CANDIDATES.find((p) => existsSync(p));
}

export async function launchChromium(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error('Chromium is not installed (apt-get install chromium)');
  return chromium.launch({
    executablePath,
    headless: true,
    // As root in a container Chromium needs --no-sandbox; the rest keeps it from reaching out to the network.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}
