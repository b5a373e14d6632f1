// Self time of `--cpu-prof` profiles (one file per thread), by function and by where the code lives (our
// src/ file, an npm package, Node's internals, GC, idle), so a tunnel's profile reads as a table.
//   node dist/bench/cpuProfileSummary.js <dir> [top=25]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? files(p) : f.endsWith('.cpuprofile') ? [p] : [];
  });
}

/** Where a frame's code lives: our file, a package, Node's own, or V8's pseudo-frames. */
function place(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const ours = /\/dist\/((?:src|bench)\/.*)$/.exec(url);
  if (ours) return ours[1]!;
  return url.startsWith('node:') ? 'node internals' : path.basename(url);
}

function summarize(file: string, top: number): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const byFunction = new Map<string, number>();
  const byPlace = new Map<string, number>();
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const where = place(url, functionName);
    const fn = `${functionName || '(anonymous)'} ${where}${url ? `:${lineNumber + 1}` : ''}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    byPlace.set(where, (byPlace.get(where) ?? 0) + us);
  }
  const idle = (byPlace.get('(idle)') ?? 0) / 1e6;
  const busy = total / 1e6 - idle;
  const rowsOf = (m: Map<string, number>) => [...m].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([k, us]) => `  ${(us / 1e6).toFixed(2).padStart(7)} s ${((100 * us) / 1e6 / Math.max(busy, 1e-9)).toFixed(1).padStart(5)}%  ${k}`).join('\n');
  return `${path.basename(file)}: ${(total / 1e6).toFixed(1)} s profiled, ${busy.toFixed(2)} s busy, ${idle.toFixed(2)} s idle\n by place:\n${rowsOf(byPlace)}\n by function:\n${rowsOf(byFunction)}`;
}

export function profileSummary(dir: string, top = 25): string {
  return files(dir).map((f) => summarize(f, top)).join('\n\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(profileSummary(process.argv[2]!, Number(process.argv[3] ?? 25)));
