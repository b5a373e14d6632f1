// Every relative link in README.md and docs/*.md points at a file that exists, and at a heading that exists
// when it names one: the README is a front door to docs/, and a moved section must not leave a dead link.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** Markdown text outside fenced code blocks and inline code spans, where a link is a link. */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, '');
}

/** The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces as hyphens, repeats numbered. */
export function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of markdown.replace(/^```[\s\S]*?^```/gm, '').matchAll(/^#{1,6}\s+(.+?)\s*#*$/gm)) {
    const text = m[1]!.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
    const slug = text.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

/** Each relative link of a markdown file that does not resolve, with the reason. */
export function brokenLinks(file: string, markdown: string): string[] {
  const problems: string[] = [];
  for (const m of prose(markdown).matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    const target = m[1]!;
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
    const [file_, anchor] = target.split('#', 2) as [string, string | undefined];
    const resolved = file_ === '' ? file : path.resolve(path.dirname(file), decodeURIComponent(file_));
    if (file_ !== '' && !existsSync(resolved)) {
      problems.push(`${path.relative(root, file)}: ${target}: no such file`);
      continue;
    }
    const headings = () => (file_ === '' ? anchors(markdown) : statSync(resolved).isFile() ? anchors(readFileSync(resolved, 'utf8')) : new Set<string>());
    if (anchor !== undefined && !headings().has(anchor)) {
      problems.push(`${path.relative(root, file)}: ${target}: no heading #${anchor} in ${path.relative(root, resolved)}`);
    }
  }
  return problems;
}

const docs = [path.join(root, 'README.md'), ...readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join(root, 'docs', f))];

test('every relative link in README.md and docs/*.md resolves, to a heading when it names one', () => {
  const problems = docs.flatMap((file) => brokenLinks(file, readFileSync(file, 'utf8')));
  assert.deepEqual(problems, []);
});

test('the README links every page of docs/ and stays a front door', () => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  for (const file of docs.slice(1)) assert.ok(readme.includes(`](docs/${path.basename(file)}`), `README links docs/${path.basename(file)}`);
  assert.ok(readme.split('\n').length < 150, `README.md has ${readme.split('\n').length} lines; move detail into a docs/ page`);
});

test('a missing file, a missing heading and a link inside code are told apart', () => {
  const file = path.join(root, 'docs', 'example.md');
  const text = '# Running once (`run --once`)\n\n## Part\n\n## Part\n\n[a](security.md#least-privileges) [b](nope.md) [c](cli.md#nope) [d](#running-once-run---once) [e](#part-1) '
    + '![f](dashboard.png) [g](https://example.com/x.md) `[h](gone.md)`\n```\n[i](gone.md)\n```\n';
  assert.deepEqual(brokenLinks(file, text), ['docs/example.md: nope.md: no such file', 'docs/example.md: cli.md#nope: no heading #nope in docs/cli.md']);
});
