import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { ADMIN, NODE_ARGS } from './daemon.js';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as one JSON document, or null. */
  json: any;
}

let configHome: string | null = null;
function emptyConfigHome(): string {
  return (configHome ??= mkdtempSync(path.join(tmpdir(), 'keen-cli-config-')));
}

/**
 * Runs the built keen-admin (dist/: `npm run build` first) as operators do: a
 * fresh process with only the connection settings given here (KEEN_URL,
 * KEEN_API_KEY, KEEN_PROFILE and the daemon's KEEN_HOST, KEEN_PORT and
 * KEEN_CONFIG are cleared unless passed), optional standard input.
 */
export function runAdmin(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...NODE_ARGS, ADMIN, ...args], {
      cwd: PROJECT_ROOT,
      // An empty config home: a developer's own ~/.config/keen/admin.json never leaks into a test.
      env: {
        ...process.env,
        KEEN_API_KEY: '',
        KEEN_URL: '',
        KEEN_PROFILE: '',
        KEEN_HOST: '',
        KEEN_PORT: '',
        KEEN_CONFIG: '',
        XDG_CONFIG_HOME: emptyConfigHome(),
        ...options.env,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += String(c)));
    child.stderr.on('data', (c) => (stderr += String(c)));
    child.on('error', reject);
    child.on('exit', (code) => {
      let json: unknown = null;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = null;
      }
      resolve({ code, stdout, stderr, json });
    });
    child.stdin.end(options.stdin ?? '');
  });
}
