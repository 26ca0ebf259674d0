import { StringDecoder } from 'node:string_decoder';
import { CliError } from './output.js';

/** The part of a TTY read stream the prompt uses (process.stdin, or a fake in tests). */
export interface PromptInput extends NodeJS.EventEmitter {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
  resume(): unknown;
  pause(): unknown;
}

export interface PromptOutput {
  write(text: string): unknown;
}

/** True when a person can answer a prompt on standard input. */
export function canPrompt(input: PromptInput = process.stdin): boolean {
  return Boolean(input.isTTY && typeof input.setRawMode === 'function');
}

/**
 * Asks for a secret on a terminal without echoing it: the terminal is put in
 * raw mode (no echo, no line editing by the tty driver) and restored whatever
 * happens. Enter ends the answer, Backspace deletes, Ctrl-C and Ctrl-D on an
 * empty line cancel, escape sequences (arrow keys) are ignored. The prompt goes
 * to `output` (stderr by default), so stdout stays clean for --json.
 */
export function readHidden(
  question: string,
  input: PromptInput = process.stdin,
  output: PromptOutput = process.stderr,
): Promise<string> {
  if (!canPrompt(input)) return Promise.reject(new CliError('cannot prompt: standard input is not a terminal', 2));
  return new Promise<string>((resolve, reject) => {
    let answer = '';
    // A character may arrive split across two reads.
    const decoder = new StringDecoder('utf8');
    const finish = (err: Error | null) => {
      input.removeListener('data', onData);
      input.setRawMode!(false);
      input.pause();
      output.write('\n');
      if (err) reject(err);
      else resolve(answer);
    };
    const onData = (chunk: Buffer | string) => {
      const text = typeof chunk === 'string' ? chunk : decoder.write(chunk);
      for (let i = 0; i < text.length; i++) {
        const c = text[i]!;
        if (c === '\r' || c === '\n') return finish(null);
        if (c === '\u0003') return finish(new CliError('cancelled', 1, 'CANCELLED'));
        if (c === '\u0004') {
          if (answer === '') return finish(new CliError('cancelled', 1, 'CANCELLED'));
          continue;
        }
        if (c === '\u007f' || c === '\b') {
          answer = Array.from(answer).slice(0, -1).join('');
          continue;
        }
        // An escape sequence (arrow keys, function keys): the rest of this chunk is part of it.
        if (c === '\u001b') break;
        if (c < ' ') continue;
        answer += c;
      }
    };
    // Echo off before the question shows: an answer typed at once must not appear on the screen.
    input.setRawMode!(true);
    output.write(question);
    input.on('data', onData);
    input.resume();
  });
}

/**
 * Asks for a new password twice, hidden, and returns it when both answers
 * match; refuses an empty one (the server checks the length rules).
 */
export async function promptNewPassword(
  input: PromptInput = process.stdin,
  output: PromptOutput = process.stderr,
): Promise<string> {
  const first = await readHidden('Password: ', input, output);
  if (first === '') throw new CliError('no password given', 1, 'CANCELLED');
  const second = await readHidden('Repeat password: ', input, output);
  if (first !== second)
    throw new CliError('the two passwords do not match; nothing was changed', 1, 'PASSWORD_MISMATCH');
  return first;
}

/**
 * The password a command was given: `--password-stdin` reads standard input,
 * `--password` (a flag, never a value) asks at a hidden prompt, twice. A
 * password is never an argument: it would show in `ps` and shell history.
 */
export async function passwordFromOptions(
  opts: { password?: boolean; passwordStdin?: boolean },
  readStdin: () => Promise<string>,
): Promise<string | undefined> {
  if (opts.password && opts.passwordStdin)
    throw new CliError('use --password (prompt) or --password-stdin (pipe), not both', 2);
  if (opts.passwordStdin) return readStdin();
  if (!opts.password) return undefined;
  if (!canPrompt())
    throw new CliError(
      '--password prompts on a terminal, and standard input is not one: pipe the password with --password-stdin',
      2,
    );
  return promptNewPassword();
}
