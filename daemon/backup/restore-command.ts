import path from 'node:path';
import { ConfigError } from '../config/errors.js';
import { loadConfig } from '../config/load.js';
import { restoreBackup, type RestoreCheck } from './restore.js';
import { BackupError, DOCS_SECTION } from './snapshot.js';

/** Control characters escaped: a hostile member name or manifest value cannot rewrite the terminal. */
function clean(text: string): string {
  return text.replace(
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

const WIDTH = 'checksums'.length;

/**
 * `keen-gateway restore FILE [--config FILE] [--force]`: one line per check
 * (`ok` or `FAIL`) on stdout as it runs, then what was moved and restored.
 * Exit codes: 0 restored, 1 refused or failed (nothing replaced unless it
 * says so), 2 usage.
 */
export async function restoreCommand(file: string, options: { config?: string; force?: boolean }): Promise<void> {
  process.umask(0o077);
  const out = (line: string) => process.stdout.write(clean(line) + '\n');
  const failWith = (message: string): never => {
    process.stderr.write(`keen-gateway: ${clean(message)}\n`);
    process.exit(1);
  };
  let config;
  try {
    config = loadConfig({ file: options.config, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) failWith(err.message);
    throw err;
  }
  const report = (c: RestoreCheck) => out(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.name.padEnd(WIDTH)}  ${c.message}`);
  try {
    const r = await restoreBackup({ config, file, report, ...(options.force ? { force: true } : {}) });
    for (const m of r.movedAside) out(`moved aside: ${m.from} -> ${path.basename(m.to)}`);
    for (const f of r.restored) out(`restored: ${f}`);
    out(
      `restore complete: ${path.resolve(file)} (taken ${r.manifest.created_at} from ${r.manifest.source.database}). ` +
        'Start the daemon, then run keen-admin credits verify and keen-admin audit verify.',
    );
  } catch (err) {
    if (err instanceof BackupError) {
      failWith(
        `${err.code === 'RESTORE_REFUSED' ? 'restore refused' : 'cannot restore'}: ${err.message}${err.code === 'RESTORE_REFUSED' ? '; nothing was replaced' : ''}${err.code === 'POSTGRES_UNSUPPORTED' ? '' : ` (${DOCS_SECTION})`}`,
      );
    }
    failWith(`restore failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}
