import { rmSync } from 'node:fs';
import { Command } from 'commander';
import { KeenClient } from '../../sdk/src/index.js';
import { globals, readStdinSecret } from '../core/context.js';
import { CliError, printResult } from '../core/output.js';
import { DEFAULT_URL, profilePath, readProfiles, shownUrl, writeProfiles, type ProfileFile } from '../core/profile.js';
import { canPrompt, readHidden } from '../core/prompt.js';

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);

/** The profile a login or logout is about: --profile, KEEN_PROFILE, the file's default, else "default". */
function profileName(cmd: Command, file: ProfileFile | null): string {
  return nonEmpty(globals(cmd).profile) ?? nonEmpty(process.env.KEEN_PROFILE) ?? file?.default ?? 'default';
}

/** The key to log in with: piped (--api-key-stdin), given as --api-key (warned about), or typed at a hidden prompt. */
async function readKey(cmd: Command, fromStdin: boolean): Promise<string> {
  const flag = cmd.optsWithGlobals<{ apiKey?: string }>().apiKey;
  let key: string;
  if (fromStdin) key = await readStdinSecret();
  else if (flag) key = flag;
  else if (canPrompt()) key = await readHidden('Admin API key: ');
  else throw new CliError('standard input is not a terminal: pipe the key with --api-key-stdin', 2);
  key = key.trim();
  if (!key) throw new CliError('no API key given', 2);
  return key;
}

/** `keen-admin login`: checks an admin API key against the daemon and saves it as a profile. */
export function loginCommand(): Command {
  return new Command('login')
    .description('check an admin API key against the daemon and save it, with the URL, as a profile (file mode 0600)')
    .option('--api-key-stdin', 'read the key from standard input instead of a hidden prompt')
    .addHelpText(
      'after',
      '\nThe profile is --profile, else KEEN_PROFILE, else the default one, else "default"; the first one saved becomes the default.\n' +
        'The file is $XDG_CONFIG_HOME/keen/admin.json (~/.config/keen/admin.json).\n' +
        '\nExample:\n  keen-admin login --url https://keen.example.com            # asks for the key\n' +
        '  printf %s "$KEY" | keen-admin login --profile staging --url https://staging.example.com --api-key-stdin',
    )
    .action(async (opts: { apiKeyStdin?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const fileName = profilePath(process.env);
      // Read first: a file that is too open or broken is reported before anything is asked.
      const file = readProfiles(fileName);
      const name = profileName(cmd, file);
      const url = (
        nonEmpty(cmd.optsWithGlobals<{ url?: string }>().url) ??
        nonEmpty(process.env.KEEN_URL) ??
        file?.profiles[name]?.url ??
        DEFAULT_URL
      ).replace(/\/+$/, '');
      const apiKey = await readKey(cmd, Boolean(opts.apiKeyStdin));
      const me = await new KeenClient({ baseUrl: url, apiKey, maxRetries: 1, timeout: 15_000 }).me();
      if (!me.scopes.includes('admin')) {
        throw new CliError(
          `the key of ${me.user.email} lacks the admin scope (it has: ${me.scopes.join(', ') || 'none'}); nothing was saved`,
          1,
          'INSUFFICIENT_SCOPE',
        );
      }
      const next: ProfileFile = {
        default: file?.default,
        profiles: { ...(file?.profiles ?? {}), [name]: { url, api_key: apiKey } },
      };
      if (!next.default || !next.profiles[next.default]) next.default = name;
      writeProfiles(fileName, next);
      const result = {
        success: true,
        profile: name,
        default: next.default === name,
        url: shownUrl(url),
        file: fileName,
        user: { id: me.user.id, email: me.user.email, role: me.user.role },
      };
      if (g.json) printResult(g, result, [], []);
      else {
        process.stdout.write(
          `logged in to ${shownUrl(url)} as ${me.user.email} (${me.user.role}); saved profile "${name}" to ${fileName}\n`,
        );
        if (next.default !== name)
          process.stdout.write(
            `the default profile is still "${next.default}": use --profile ${name} or KEEN_PROFILE=${name}\n`,
          );
      }
    });
}

/** `keen-admin logout`: forgets a saved profile (the key itself stays valid until revoked). */
export function logoutCommand(): Command {
  return new Command('logout')
    .description('remove a saved profile from this machine (revoke the key with keen-admin keys revoke)')
    .addHelpText('after', '\nExample:\n  keen-admin logout\n  keen-admin logout --profile staging')
    .action(async (_opts, cmd: Command) => {
      const g = globals(cmd);
      const fileName = profilePath(process.env);
      // Removing a key is always safe, so a file with loose permissions is not refused here.
      const file = readProfiles(fileName, { checkMode: false });
      const name = profileName(cmd, file);
      if (!file?.profiles[name]) throw new CliError(`no profile "${name}" in ${fileName}`, 1, 'UNKNOWN_PROFILE');
      const { [name]: _removed, ...rest } = file.profiles;
      const remaining = Object.keys(rest);
      if (remaining.length === 0) {
        rmSync(fileName, { force: true });
      } else {
        writeProfiles(fileName, {
          ...(file.default && file.default !== name ? { default: file.default } : {}),
          profiles: rest,
        });
      }
      const result = { success: true, profile: name, file: fileName, remaining };
      if (g.json) printResult(g, result, [], []);
      else {
        process.stdout.write(`removed profile "${name}" from ${fileName}\n`);
        if (file.default === name && remaining.length > 0)
          process.stdout.write(`no default profile now: use --profile (${remaining.join(', ')}) or keen-admin login\n`);
      }
    });
}
