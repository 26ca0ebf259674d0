import { Command } from 'commander';
import { BackupError, createBackup } from '../../daemon/operator.js';
import { daemonConfig, globals } from '../core/context.js';
import { CliError, printResult } from '../core/output.js';

/**
 * `keen-admin backup --to FILE`: like `init` and `doctor`, works on the
 * daemon's files directly (same config and environment as the daemon), not
 * through the API; safe while the daemon runs.
 */
export function backupCommand(): Command {
  return new Command('backup')
    .description(
      'write a consistent backup of a SQLite daemon (running or not) to one file: database, secrets, audit archive',
    )
    .requiredOption('--to <file>', 'the backup file to write (a tar archive, mode 0600)')
    .option('-c, --config <file>', "the daemon's YAML config (default: $KEEN_CONFIG)")
    .option('--force', 'replace --to when it exists')
    .addHelpText(
      'after',
      "\nRun it where the daemon runs, as the daemon's user, with its config and KEEN_* variables.\n" +
        'SQLite only: for Postgres use pg_dump / pg_basebackup (docs/DEPLOY.md, "Backups").\n' +
        'Restore with the daemon stopped: keen-gateway restore FILE --config FILE.\n' +
        '\nExample:\n  keen-admin backup --config /etc/keen-gateway/config.yaml --to /backups/keen-$(date -u +%Y%m%dT%H%M%SZ).tar\n' +
        '  tar xOf /backups/keen-....tar manifest.json',
    )
    .action(async (opts: { to: string; config?: string; force?: boolean }, cmd: Command) => {
      const config = daemonConfig(opts.config);
      // Whatever the caller's umask, nothing written here is readable by others.
      process.umask(0o077);
      let r;
      try {
        r = await createBackup({ config, to: opts.to, ...(opts.force ? { force: true } : {}) });
      } catch (err) {
        if (err instanceof BackupError) throw new CliError(err.message, 1, err.code);
        throw err;
      }
      const g = globals(cmd);
      if (!g.json) process.stdout.write(`backup written: ${r.file} (${r.size} bytes, mode 0600)\n`);
      printResult(
        g,
        { success: true, file: r.file, size: r.size, manifest: r.manifest, notes: r.notes },
        r.manifest.members.map((m) => ({ member: m.name, size: m.size, sha256: m.sha256 })),
        ['member', 'size', 'sha256'],
      );
      if (!g.json) {
        const c = r.manifest.counts;
        const archived = c.audit_archived_entries ? ` + ${c.audit_archived_entries} archived` : '';
        process.stdout.write(
          `${c.users} users, ${c.credit_ledger_entries} ledger entries, ${c.audit_entries} audit entries${archived} (head seq ${c.audit_head_seq})\n`,
        );
      }
      for (const note of r.notes) process.stderr.write(`keen-admin: note: ${note}\n`);
    });
}
