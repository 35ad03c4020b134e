import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const SKIP = new Set(['node_modules', '.git', 'dist', 'coverage']);
const TEXT = /\.(?:md|ts|mts|js|mjs|yaml|yml|tpl|txt|json|go)$|^Dockerfile$|^run$/;

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    if (SKIP.has(name)) return [];
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return walk(path);
    return TEXT.test(name) && name !== 'package-lock.json' ? [path] : [];
  });
}

const files = walk(ROOT).map((path) => ({ path, rel: relative(ROOT, path), text: readFileSync(path, 'utf8') }));

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchors(markdown: string): Set<string> {
  return new Set([...markdown.matchAll(/^#{1,6} (.+)$/gm)].map((m) => (m[1] as string).trim().toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-')));
}

/** Issue 16 item 5: nothing in the repository points at a file it does not hold. */
describe('references', () => {
  it('repo-paths-exist: every path to a file of this repository named anywhere in it exists', () => {
    const missing: string[] = [];
    for (const file of files) {
      for (const m of file.text.matchAll(/(?<![\w/.-])((?:docs|src|test|bench|helm|config|scripts)\/[\w./-]*\.(?:md|ts|yaml|yml|tpl|txt|json|go))\b/g)) {
        const path = m[1] as string;
        // bench/.tmp/ holds what a bench run writes (git-ignored): named, never committed.
        if (path.includes('*') || path.startsWith('bench/.tmp/') || existsSync(join(ROOT, path))) continue;
        missing.push(`${file.rel}: ${path}`);
      }
    }
    assert.deepEqual(missing, []);
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
