import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const TEXT = /\.(?:md|ts|mts|js|mjs|yaml|yml|tpl|txt|json|go)$|^Dockerfile$|^run$/;

const git = (args: string[], input?: string) => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8', input, maxBuffer: 64 * 1024 * 1024 });

/**
 * The repository's files: tracked, plus new ones not ignored yet, as git lists them. What
 * .gitignore leaves out (node_modules, a bench run's bench/.tmp with old commits extracted in
 * it, a developer's .scratch) is not the repository and is never read.
 */
const listed = git(['ls-files', '-z', '--cached', '--others', '--exclude-standard']);
const gitMissing: string | false =
  listed.error || listed.status !== 0 ? 'git not found, or not a git work tree: skipping the reference checks (they read the repository\'s file list from git)' : false;

const files = gitMissing
  ? []
  : [...new Set(listed.stdout.split('\0'))]
      .filter((rel) => rel !== '' && TEXT.test(basename(rel)) && basename(rel) !== 'package-lock.json' && existsSync(join(ROOT, rel)))
      .map((rel) => ({ path: join(ROOT, rel), rel, text: readFileSync(join(ROOT, rel), 'utf8') }));

/** The paths of `paths` that .gitignore covers: what a run writes (bench/.tmp/...), named but never committed. */
function ignored(paths: readonly string[]): Set<string> {
  if (paths.length === 0) return new Set();
  // Exit status 1 only means "none of them is ignored".
  const result = git(['check-ignore', '--no-index', '--stdin'], paths.join('\n'));
  return new Set(result.stdout.split('\n').filter(Boolean));
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchors(markdown: string): Set<string> {
  return new Set([...markdown.matchAll(/^#{1,6} (.+)$/gm)].map((m) => (m[1] as string).trim().toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-')));
}

/** Issue 16 item 5: nothing in the repository points at a file it does not hold. */
describe('references', { skip: gitMissing }, () => {
  it('repo-paths-exist: every path to a file of this repository named anywhere in it exists', () => {
    const missing: Array<{ at: string; path: string }> = [];
    for (const file of files) {
      for (const m of file.text.matchAll(/(?<![\w/.-])((?:docs|src|test|bench|helm|config|scripts)\/[\w./-]*\.(?:md|ts|yaml|yml|tpl|txt|json|go))\b/g)) {
        const path = m[1] as string;
        if (path.includes('*') || existsSync(join(ROOT, path))) continue;
        missing.push({ at: file.rel, path });
      }
    }
    const outputs = ignored([...new Set(missing.map((m) => m.path))]);
    assert.deepEqual(
      missing.filter((m) => !outputs.has(m.path)).map((m) => `${m.at}: ${m.path}`),
      [],
    );
  });

  it('only-the-repository-is-read: git-ignored files (bench/.tmp of a bench run, .scratch) are not walked', () => {
    assert.ok(files.length > 100, `${files.length} files listed`);
    assert.deepEqual(
      files.filter((f) => /^(?:node_modules|bench\/\.tmp|\.scratch|dist|coverage)\//.test(f.rel)).map((f) => f.rel),
      [],
    );
  });

  it('markdown-links-resolve: every relative link in a Markdown file reaches a file (and heading) that exists', () => {
    const broken: string[] = [];
    for (const file of files.filter((f) => f.rel.endsWith('.md'))) {
      for (const m of file.text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1] as string;
        if (/^(?:[a-z]+:|#)/.test(target)) continue;
        const [path, anchor] = target.split('#') as [string, string | undefined];
        const full = join(dirname(file.path), path);
        if (!existsSync(full)) broken.push(`${file.rel}: ${target}`);
        else if (anchor && full.endsWith('.md') && !anchors(readFileSync(full, 'utf8')).has(anchor)) broken.push(`${file.rel}: ${target} (no such heading)`);
      }
    }
    assert.deepEqual(broken, []);
  });

  it('no-external-spec-citations: the shared protocol notes are not in the repo, so nothing cites them', () => {
    const name = ['coze', 'protocol.md'].join('-');
    assert.deepEqual(files.filter((f) => f.text.includes(name)).map((f) => f.rel), []);
  });
});
