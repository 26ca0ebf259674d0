import { expect } from 'chai';
import type { Command } from 'commander';
import { bashCompletion, completionTree, zshCompletion } from '../../../cli/commands/completion.js';
import { buildProgram } from '../../../cli/program.js';

function leaves(cmd: Command, trail: string[] = []): Array<{ path: string; cmd: Command }> {
  if (cmd.commands.length === 0) return [{ path: trail.join(' '), cmd }];
  return cmd.commands.flatMap((c) => leaves(c, [...trail, c.name()]));
}

/** The whole --help text of a command, including what addHelpText adds. */
function helpOf(cmd: Command): string {
  let text = '';
  for (let c: Command | null = cmd; c; c = c.parent)
    c.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s) });
  cmd.outputHelp();
  return text;
}

describe('keen-admin command tree', () => {
  it('every leaf command has an Example section in its --help', () => {
    const all = leaves(buildProgram());
    expect(all.length).to.be.greaterThan(20);
    for (const { path, cmd } of all) {
      // audit tail says "Examples:" (two of them): same section, plural.
      expect(helpOf(cmd), path).to.match(/^Examples?:$/m);
    }
  });

  it('every command group has an Example section in its --help too', () => {
    const groups = buildProgram().commands.filter((c) => c.commands.length > 0);
    expect(groups.length).to.be.at.least(8);
    for (const g of groups) expect(helpOf(g), g.name()).to.match(/^Examples?:$/m);
  });

  it('the root help has an example and names the connection order', () => {
    const text = helpOf(buildProgram());
    expect(text).to.include('Example:').and.include('KEEN_PROFILE').and.include('keen-admin login');
    // The daemon's own settings come after KEEN_URL and before the default profile.
    expect(text).to.match(/KEEN_URL[\s\S]*KEEN_HOST\/KEEN_PORT[\s\S]*KEEN_CONFIG[\s\S]*default profile/);
    expect(text).to.include('"success":false');
  });

  it('completion data comes from the tree: every group, subcommand and option', () => {
    const program = buildProgram();
    const tree = completionTree(program);
    const root = tree.find((n) => n.path === '')!;
    expect(root.commands.map((c) => c.name)).to.include.members([
      'users',
      'keys',
      'credits',
      'usage',
      'audit',
      'sessions',
      'tenants',
      'budgets',
      'webhooks',
      'init',
      'login',
      'logout',
      'doctor',
      'completion',
    ]);
    const create = tree.find((n) => n.path === 'users/create')!;
    expect(create.options.map((o) => o.name)).to.include.members([
      '--email',
      '--tier',
      '--password',
      '--password-stdin',
      '--profile',
      '--json',
      '--help',
    ]);
    expect(create.options.find((o) => o.name === '--tier')!.choices).to.deep.equal([
      'individual',
      'team',
      'enterprise',
    ]);
    // A command added later completes without touching the script generator.
    program.command('widgets').description('a new group').command('spin').option('--fast', 'quickly');
    expect(bashCompletion(program)).to.include("'widgets/spin') echo '--fast");
    expect(zshCompletion(program)).to.match(/^#compdef keen-admin\n/);
  });
});
