import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../../daemon/paths.js';
import type { Monitoring } from '../../../daemon/monitoring/index.js';
import type { TestDaemon } from '../../helpers/daemon.js';

/** One row of docs/METRICS.md. */
export interface CatalogueEntry {
  name: string;
  type: string;
  labels: string[];
  help: string;
}

/** The catalogue as docs/METRICS.md states it: every table row whose first cell is a `keen_` name. */
export function readCatalogue(): CatalogueEntry[] {
  const text = readFileSync(path.join(PROJECT_ROOT, 'docs/METRICS.md'), 'utf8');
  const out: CatalogueEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^\| `(keen_[a-z0-9_]+)` \| (\w+) \| ([^|]+) \| (.+) \|$/.exec(line.trim());
    if (!m) continue;
    const labels = m[3]!.trim() === '-' ? [] : m[3]!.split(',').map((l) => l.trim());
    out.push({ name: m[1]!, type: m[2]!, labels: labels.sort(), help: m[4]!.trim() });
  }
  return out;
}

/** A parsed exposition: HELP and TYPE per family, and every sample with its labels. */
export interface Scrape {
  help: Map<string, string>;
  type: Map<string, string>;
  samples: Array<{ family: string; name: string; labels: Record<string, string>; value: number }>;
}

export function parseExposition(text: string): Scrape {
  const help = new Map<string, string>();
  const type = new Map<string, string>();
  const samples: Scrape['samples'] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    let m = /^# HELP (\S+) (.*)$/.exec(line);
    if (m) {
      help.set(m[1]!, m[2]!.replace(/\\n/g, '\n').replace(/\\\\/g, '\\'));
      continue;
    }
    m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) {
      type.set(m[1]!, m[2]!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const s = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!s) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (s[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    const name = s[1]!;
    const family = type.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    samples.push({ family, name, labels, value: Number(s[3]) });
  }
  return { help, type, samples };
}

/**
 * Label values that look like a person's or a credential's: an id with a type
 * prefix, an email, an API key, a refresh token, a JWT. Metrics must never
 * carry them (unbounded cardinality, and a leak).
 */
export function suspiciousLabelValue(value: string): string | null {
  if (/\b(usr|ten|key|ses|res|txn|req|aud|rtk|whk|con)_[0-9a-z]{8,}/.test(value)) return 'looks like an id';
  if (value.includes('@')) return 'looks like an email';
  if (value.includes('ak_live_')) return 'looks like an API key';
  if (/\brt_[A-Za-z0-9_-]{16,}/.test(value)) return 'looks like a refresh token';
  if (/eyJ[A-Za-z0-9_-]{10,}/.test(value)) return 'looks like a JWT';
  if (value.length > 100) return 'too long for a bounded label';
  return null;
}

/**
 * The daemon's Monitoring, as the composition root built it (`container.monitoring`):
 * never one built by the test, so a daemon that stopped wiring it fails these tests.
 * `owned` is always false (the daemon stops it).
 */
export function ensureMonitoring(d: TestDaemon): { monitoring: Monitoring; owned: boolean } {
  const wired = (d.container as { monitoring?: Monitoring }).monitoring;
  if (!wired) throw new Error('the container does not wire Monitoring: /metrics would lack its gauges');
  return { monitoring: wired, owned: false };
}
