import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * This daemon's identity, kept in `<data_dir>/instance-id` so it survives a
 * restart: after a crash the daemon finds the sessions it owned and ends them.
 * Two daemons must not share a data directory.
 */
export function loadInstanceId(dataDir: string): string {
  const file = path.join(dataDir, 'instance-id');
  if (existsSync(file)) {
    const id = readFileSync(file, 'utf8').trim();
    if (/^gw_[0-9a-f]{16}$/.test(id)) return id;
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const id = `gw_${randomBytes(8).toString('hex')}`;
  writeFileSync(file, id + '\n', { mode: 0o600 });
  return id;
}
