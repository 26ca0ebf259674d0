import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import { CliError } from '../../../cli/core/output.js';
import { passwordFromOptions, promptNewPassword, readHidden, type PromptInput } from '../../../cli/core/prompt.js';

/** A terminal that records raw-mode switches; `type()` delivers keystrokes. */
class FakeTty extends EventEmitter implements PromptInput {
  isTTY = true;
  raw: boolean[] = [];
  paused = true;
  setRawMode(mode: boolean) {
    this.raw.push(mode);
  }
  resume() {
    this.paused = false;
  }
  pause() {
    this.paused = true;
  }
  type(text: string) {
    this.emit('data', Buffer.from(text, 'utf8'));
  }
}

function output() {
  const lines: string[] = [];
  return { lines, write: (t: string) => lines.push(t), text: () => lines.join('') };
}

describe('keen-admin hidden prompt', () => {
  it('reads a line without echoing it and restores the terminal', async () => {
    const tty = new FakeTty();
    const out = output();
    const answer = readHidden('Password: ', tty, out);
    tty.type('hunter2-long');
    tty.type('\r');
    expect(await answer).to.equal('hunter2-long');
    expect(out.text()).to.equal('Password: \n');
    expect(tty.raw).to.deep.equal([true, false]);
    expect(tty.paused).to.equal(true);
    expect(tty.listenerCount('data')).to.equal(0);
  });

  it('handles backspace, multi-byte characters and ignores escape sequences', async () => {
    const tty = new FakeTty();
    const answer = readHidden('? ', tty, output());
    tty.type('pässx\u007f');
    tty.type('\u001b[A');
    tty.type('wörd\n');
    expect(await answer).to.equal('pässwörd');
  });

  it('Ctrl-C cancels and still restores the terminal', async () => {
    const tty = new FakeTty();
    const answer = readHidden('? ', tty, output());
    tty.type('abc\u0003');
    const err = await answer.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(CliError);
    expect(tty.raw).to.deep.equal([true, false]);
  });

  it('refuses to prompt when the input is not a terminal', async () => {
    const notTty = Object.assign(new EventEmitter(), { isTTY: false, resume() {}, pause() {} });
    const err = await readHidden('? ', notTty, output()).then(
      () => null,
      (e: unknown) => e,
    );
    expect((err as CliError).exitCode).to.equal(2);
  });

  it('asks for a new password twice and compares', async () => {
    const tty = new FakeTty();
    const out = output();
    const p = promptNewPassword(tty, out);
    tty.type('correct horse\r');
    await new Promise((r) => setImmediate(r));
    tty.type('correct horse\r');
    expect(await p).to.equal('correct horse');
    expect(out.text()).to.include('Password: ').and.include('Repeat password: ').and.not.include('correct horse');

    const tty2 = new FakeTty();
    const q = promptNewPassword(tty2, output());
    tty2.type('one password\r');
    await new Promise((r) => setImmediate(r));
    tty2.type('another one\r');
    const err = await q.then(
      () => null,
      (e: unknown) => e,
    );
    expect((err as CliError).message).to.include('do not match');
  });

  it('--password and --password-stdin together are a usage error; --password-stdin reads stdin', async () => {
    const both = await passwordFromOptions({ password: true, passwordStdin: true }, async () => 'x').then(
      () => null,
      (e: unknown) => e,
    );
    expect((both as CliError).exitCode).to.equal(2);
    expect(await passwordFromOptions({ passwordStdin: true }, async () => 'from-stdin')).to.equal('from-stdin');
    expect(await passwordFromOptions({}, async () => 'unused')).to.equal(undefined);
  });
});
