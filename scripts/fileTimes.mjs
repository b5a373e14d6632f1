// A node:test reporter beside spec: each test file's time, slowest first, so every run of the suite says where its
// time went (docs/setup-and-tests.md keeps a dated table). "tests" sums its top-level tests; "wall" runs from the
// previous file's last event to its own last one (files run one at a time), so it adds the file's process start.
import path from 'node:path';

export default async function* fileTimes(source) {
  const files = new Map();
  let last = Date.now();
  for await (const event of source) {
    const { file, nesting, details } = event.data ?? {};
    if (!file) continue;
    const now = Date.now();
    const entry = files.get(file) ?? { tests: 0, wall: 0 };
    files.set(file, entry);
    entry.wall += now - last;
    last = now;
    if ((event.type === 'test:pass' || event.type === 'test:fail') && nesting === 0 && details?.type !== 'suite') entry.tests += details?.duration_ms ?? 0;
  }
  const rows = [...files].sort((a, b) => b[1].wall - a[1].wall);
  const sum = (key) => Math.round(rows.reduce((n, [, e]) => n + e[key], 0) / 1000);
  yield `\ntime per test file (${rows.length} files: ${sum('wall')} s wall, ${sum('tests')} s in tests):\n`;
  for (const [file, e] of rows) yield `${(e.wall / 1000).toFixed(1).padStart(8)} s wall ${(e.tests / 1000).toFixed(1).padStart(8)} s tests  ${path.relative(process.cwd(), file)}\n`;
}
