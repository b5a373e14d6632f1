import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * The rooms of src/ in floor order, bottom first: the one place the order is declared (docs/architecture.md
 * draws it). A room is a top-level folder of src/, or a top-level file for the leaves. A file may import its
 * own room and the rooms below it, nothing above and nothing undeclared.
 */
const floorOrder = [
  'redact', 'retry', 'names', 'errors', 'pg',
  'instruments', 'config', 'contracts', 'capture', 'transport', 'validate', 'apply', 'dlq', 'verify',
  'report', 'pipeline', 'setup', 'stack', 'cli',
] as const;

const srcRoot = fileURLToPath(new URL('../../../src/', import.meta.url));

/** Every module a file names: static, type-only, side-effect, export-from, dynamic and `import('…')` types. */
function importsOf(fileName: string, text: string): string[] {
  const out: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteralLike(node.arguments[0])) {
      out.push(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      out.push(node.argument.literal.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      out.push(node.moduleReference.expression.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false));
  return out;
}

/** The room of a path relative to src/: its first folder, or the file's name for a top-level file. */
function roomOf(relative: string): string {
  const [first, ...rest] = relative.split(/[\\/]/);
  return rest.length > 0 ? first! : first!.replace(/\.[cm]?[jt]s$/, '');
}

/** `file → import: why` for each import that runs up the order or into an undeclared room. */
function violations(files: Map<string, string>, order: readonly string[] = floorOrder): string[] {
  const floor = new Map(order.map((room, i) => [room, i]));
  const found: string[] = [];
  for (const [file, text] of files) {
    const from = roomOf(file);
    if (!floor.has(from)) {
      found.push(`${file}: room "${from}" is not in the floor order; declare it in test/unit/floorOrder.test.ts`);
      continue;
    }
    for (const spec of importsOf(file, text)) {
      if (!spec.startsWith('.')) continue;
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
      if (target.startsWith('..')) {
        found.push(`${file} → ${spec}: imports from outside src/`);
        continue;
      }
      const to = roomOf(target);
      if (!floor.has(to)) found.push(`${file} → ${spec}: room "${to}" is not in the floor order`);
      else if (floor.get(to)! > floor.get(from)!) found.push(`${file} → ${spec}: ${to} is above ${from}; move what it needs down, or the file up`);
    }
  }
  return found;
}

function sourcesOf(dir: string, base = dir, out = new Map<string, string>()): Map<string, string> {
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) sourcesOf(full, base, out);
    else if (/\.[cm]?[jt]s$/.test(name)) out.set(path.relative(base, full).split(path.sep).join('/'), readFileSync(full, 'utf8'));
  }
  return out;
}

test('every import in src/ runs down the floor order or stays in its room', () => {
  const files = sourcesOf(srcRoot);
  assert.ok(files.size > 50, `src/ read from ${srcRoot}`);
  assert.deepEqual(violations(files), []);
});

test('every declared room exists, so the order drawn is the order built', () => {
  const rooms = new Set([...sourcesOf(srcRoot).keys()].map(roomOf));
  assert.deepEqual(floorOrder.filter((room) => !rooms.has(room)), []);
});

test('each form of import is read, and each way of breaking the order is named', () => {
  const files = new Map([
    ['pg.ts', "import { a } from './errors.js';\nimport type { B } from './config/load.js';"],
    ['capture/x.ts', "export { c } from '../apply/y.js';\nconst d = await import('../cli/z.js');\nlet e: import('../report/w.js').E;"],
    ['apply/y.ts', "import '../stack/s.js';\nimport { f } from '../capture/x.js';\nimport g from 'pg';\nimport { h } from '../../package.json';"],
    ['apply/z.ts', "import {\n  i,\n  type J,\n} from '../somewhere/k.js';"],
    ['elsewhere/q.ts', ''],
  ]);
  assert.deepEqual(violations(files), [
    'pg.ts → ./config/load.js: config is above pg; move what it needs down, or the file up',
    'capture/x.ts → ../apply/y.js: apply is above capture; move what it needs down, or the file up',
    'capture/x.ts → ../cli/z.js: cli is above capture; move what it needs down, or the file up',
    'capture/x.ts → ../report/w.js: report is above capture; move what it needs down, or the file up',
    'apply/y.ts → ../stack/s.js: stack is above apply; move what it needs down, or the file up',
    'apply/y.ts → ../../package.json: imports from outside src/',
    'apply/z.ts → ../somewhere/k.js: room "somewhere" is not in the floor order',
    'elsewhere/q.ts: room "elsewhere" is not in the floor order; declare it in test/unit/floorOrder.test.ts',
  ]);
});
