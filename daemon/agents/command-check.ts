import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import path from 'node:path';

/** True when `file` is a regular file this process may execute. */
function isExecutableFile(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    accessSync(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks `agent.command` (already resolved by the config loader) before the daemon
 * serves: its program exists and is executable (a bare name looked up on the
 * agent's PATH, a path checked directly), and its script (the first argument that
 * is not an option, when it is a path) exists. Returns the problems, each naming
 * `agent.command`; empty when the command looks runnable.
 */
export function checkAgentCommand(
  command: readonly string[],
  agentPath: string | undefined,
  cwd = process.cwd(),
): string[] {
  const problems: string[] = [];
  const program = command[0];
  if (!program) return ['agent.command: is empty'];
  if (program.includes('/')) {
    const file = path.resolve(cwd, program);
    if (!isExecutableFile(file))
      problems.push(`agent.command: the program ${file} does not exist or is not executable`);
  } else {
    const dirs = (agentPath ?? '').split(':').filter((d) => d.length > 0 && path.isAbsolute(d));
    if (!dirs.some((d) => isExecutableFile(path.join(d, program)))) {
      problems.push(
        `agent.command: the program "${program}" is not found on the agent's PATH (${agentPath ?? 'unset'})`,
      );
    }
  }
  const script = command.slice(1).find((arg) => !arg.startsWith('-'));
  if (script !== undefined && (path.isAbsolute(script) || /^\.{1,2}\//.test(script))) {
    const file = path.resolve(cwd, script);
    let found = false;
    try {
      found = statSync(file).isFile();
    } catch {
      found = false;
    }
    if (!found) problems.push(`agent.command: the script ${file} does not exist`);
  }
  return problems;
}
