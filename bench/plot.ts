/** A latency CDF as a small self-contained SVG: one line per series, log-scaled milliseconds. */
export function latencyPlot(series: { name: string; color: string; samples: number[] }[], title: string): string {
  const w = 640;
  const h = 360;
  const left = 60;
  const bottom = 40;
  const top = 30;
  const right = 20;
  const minMs = 0.1;
  const maxMs = 1000;
  const x = (ms: number) => left + ((Math.log10(Math.min(maxMs, Math.max(minMs, ms))) - Math.log10(minMs)) / (Math.log10(maxMs) - Math.log10(minMs))) * (w - left - right);
  const y = (q: number) => h - bottom - q * (h - bottom - top);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="${w}" height="${h}" fill="white"/>`,
    `<text x="${w / 2}" y="18" text-anchor="middle" font-size="14">${title}</text>`,
  ];
  for (const ms of [0.1, 1, 10, 100, 1000]) {
    parts.push(`<line x1="${x(ms)}" y1="${y(0)}" x2="${x(ms)}" y2="${y(1)}" stroke="#ddd"/>`, `<text x="${x(ms)}" y="${h - bottom + 16}" text-anchor="middle">${ms} ms</text>`);
  }
  for (const q of [0, 0.5, 0.9, 0.99, 1]) {
    parts.push(`<line x1="${left}" y1="${y(q)}" x2="${w - right}" y2="${y(q)}" stroke="#eee"/>`, `<text x="${left - 6}" y="${y(q) + 4}" text-anchor="end">${q * 100}%</text>`);
  }
  series.forEach((s, i) => {
    const n = s.samples.length;
    const step = Math.max(1, Math.floor(n / 400));
    const points: string[] = [];
    for (let k = 0; k < n; k += step) points.push(`${x(s.samples[k]!).toFixed(1)},${y((k + 1) / n).toFixed(1)}`);
    if (n > 0) points.push(`${x(s.samples[n - 1]!).toFixed(1)},${y(1).toFixed(1)}`);
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${points.join(' ')}"/>`);
    parts.push(`<rect x="${left + 10}" y="${top + 8 + i * 18}" width="12" height="3" fill="${s.color}"/><text x="${left + 28}" y="${top + 13 + i * 18}">${s.name}</text>`);
  });
  parts.push(`<text x="${w / 2}" y="${h - 6}" text-anchor="middle">source commit → visible in target (cumulative share of changes)</text>`, '</svg>');
  return parts.join('\n');
}
