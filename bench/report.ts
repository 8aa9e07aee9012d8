/** The benchmark's result files: the markdown table and a self-drawn SVG bar chart. */
import os from 'node:os';
import { fmt } from './stats.js';

/** kubeloop2: a second daemon with `--proxy-processes 2` in front of the same pods */
export const CONTENDERS = ['kubeloop', 'kubeloop2', 'haproxy', 'nginx', 'direct'] as const;
export type ContenderName = (typeof CONTENDERS)[number];
export const TITLE: Record<ContenderName, string> = { kubeloop: 'kubeloop', kubeloop2: 'kubeloop -p 2', haproxy: 'HAProxy', nginx: 'nginx', direct: 'direct' };

export interface Figure {
  key: string;
  label: string;
  unit: string;
  better: 'higher' | 'lower';
  /** drawn in the SVG (the goal figures); others are table-only diagnostics */
  chart: boolean;
  /** contender → value per round */
  raw: Partial<Record<ContenderName, number[]>>;
  median: Partial<Record<ContenderName, number>>;
  /** median of per-round ratios to HAProxy / to direct */
  vsHaproxy: Partial<Record<ContenderName, number>>;
  vsDirect: Partial<Record<ContenderName, number>>;
  /** every raw measurement (tool output parsed) per contender per round */
  details: Partial<Record<ContenderName, unknown[]>>;
}

export interface Goal {
  what: string;
  target: string;
  value: string;
  /** null: not measured in this run */
  met: boolean | null;
  note?: string;
}

export interface KubeloopOnlyRow {
  what: string;
  value: string;
  reference?: string;
}

export interface Results {
  date: string;
  mode: 'full' | 'quick' | 'partial';
  durationSeconds: number;
  machine: Record<string, unknown>;
  versions: Record<string, string>;
  config: Record<string, unknown>;
  figures: Figure[];
  kubeloopOnly: KubeloopOnlyRow[];
  goals: Goal[];
  skipped: string[];
  notes: string[];
  raw: Record<string, unknown>;
}

export function markdown(r: Results, svgName: string): string {
  const present = CONTENDERS.filter((c) => r.figures.some((f) => f.raw[c]?.length));
  const m = r.machine;
  const lines: string[] = [];
  lines.push(`# kubeloop benchmarks — ${r.date} (${r.mode})`, '');
  lines.push(
    `Machine: ${m.nproc} × ${m.cpuModel}, ${m.memGiB} GiB, Linux ${m.kernel}, load average at start ${m.loadAtStart}. ` +
      `Versions: ${Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.`,
    '',
  );
  lines.push(
    `Every figure is measured in ${r.config.rounds} interleaved rounds (each round runs every contender once, in turn), all on loopback, ` +
      `load generator and servers sharing the same ${m.nproc} cores. Cells are medians; ratios are medians of the per-round ratios ` +
      `(contenders of one round run seconds apart). All contenders forward to the same 3 backend processes ` +
      `(the 3 pods of kubeloop's Service); "direct" is the client talking to one of them with no proxy.`,
    '',
  );
  if (r.figures.length) {
    const two = present.includes('kubeloop2');
    const head = ['figure', ...present.map((c) => TITLE[c]), 'kubeloop ÷ HAProxy', ...(two ? ['kubeloop -p 2 ÷ HAProxy'] : []), 'kubeloop ÷ direct', 'nginx ÷ HAProxy'];
    lines.push(`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`);
    for (const f of r.figures) {
      const cells = present.map((c) => fmt(f.median[c]));
      const ratio = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '—' : `${fmt(x)}×`);
      const ratios = [ratio(f.vsHaproxy.kubeloop), ...(two ? [ratio(f.vsHaproxy.kubeloop2)] : []), ratio(f.vsDirect.kubeloop), ratio(f.vsHaproxy.nginx)];
      lines.push(`| ${f.label} (${f.unit}, ${f.better} is better) | ${cells.join(' | ')} | ${ratios.join(' | ')} |`);
    }
    lines.push('');
    if (two) {
      lines.push(
        '"kubeloop -p 2" is a second daemon started with `--proxy-processes 2` (the daemon and one proxy worker process accept on ' +
          'the Service ports), with a selector-less Service in front of the same 3 pods; "kubeloop" is the default (one process).',
        '',
      );
    }
  }
  if (r.kubeloopOnly.length) {
    lines.push('| kubeloop only | value | reference |', '|---|---:|---|');
    for (const k of r.kubeloopOnly) lines.push(`| ${k.what} | ${k.value} | ${k.reference ?? ''} |`);
    lines.push('');
  }
  if (r.goals.length) {
    lines.push('## Goals (issue 7)', '', '| goal | target | this run | met |', '|---|---|---|:-:|');
    for (const g of r.goals) {
      lines.push(`| ${g.what} | ${g.target} | ${g.value}${g.note ? ` — ${g.note}` : ''} | ${g.met === null ? 'n/a' : g.met ? '✅' : '❌'} |`);
    }
    lines.push('');
  }
  if (r.figures.length) lines.push(`![kubeloop, nginx and direct relative to HAProxy](${svgName})`, '');
  if (r.notes.length || r.skipped.length) {
    lines.push('## Notes', '');
    for (const s of r.skipped) lines.push(`- skipped: ${s}`);
    for (const n of r.notes) lines.push(`- ${n}`);
    lines.push('');
  }
  lines.push(`Raw figures, tool outputs, machine and versions: \`${r.date}.json\`. Run time ${Math.round(r.durationSeconds)} s.`, '');
  return lines.join('\n');
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * Horizontal bars: each contender's standing relative to HAProxy (HAProxy = 1, the dashed
 * line), "higher is better" for every figure: throughput figures are contender ÷ HAProxy,
 * latency and memory figures are HAProxy ÷ contender.
 */
export function svg(r: Results): string {
  const shown = (['kubeloop', 'kubeloop2', 'nginx', 'direct'] as ContenderName[]).filter((c) => c !== 'kubeloop2' || r.figures.some((f) => f.raw.kubeloop2?.length));
  const color: Record<string, string> = { kubeloop: '#326ce5', kubeloop2: '#9db8f2', nginx: '#8c8c8c', direct: '#c7c7c7' };
  const figs = r.figures.filter((f) => f.chart && Number.isFinite(f.vsHaproxy.kubeloop ?? NaN));
  const goodness = (f: Figure, c: ContenderName): number | undefined => {
    const x = f.vsHaproxy[c];
    if (x === undefined || !Number.isFinite(x) || x <= 0) return undefined;
    return f.better === 'higher' ? x : 1 / x;
  };
  let max = 2;
  for (const f of figs) for (const c of shown) max = Math.max(max, Math.min(4, goodness(f, c) ?? 0));
  max = Math.ceil(max * 2) / 2;
  const left = 300;
  const width = 860;
  const plot = width - left - 70;
  const bar = 13;
  const groupH = shown.length * bar + 14;
  const top = 58;
  const height = top + figs.length * groupH + 50;
  const x = (v: number) => left + (Math.min(v, max) / max) * plot;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="12" y="22" font-size="15" font-weight="bold">kubeloop vs HAProxy (= 1.0), higher is better</text>`,
    `<text x="12" y="40" fill="#555">${esc(`${r.date} · ${r.mode} run · ${r.config.rounds} interleaved rounds · ${r.machine.nproc} cores · latency and memory inverted (HAProxy ÷ contender)`)}</text>`,
  );
  for (let t = 0; t <= max; t += 0.5) {
    out.push(`<line x1="${x(t)}" y1="${top - 6}" x2="${x(t)}" y2="${height - 40}" stroke="${t === 1 ? '#d62728' : '#eee'}" ${t === 1 ? 'stroke-dasharray="4 3" stroke-width="1.5"' : ''}/>`);
    out.push(`<text x="${x(t)}" y="${height - 26}" text-anchor="middle" fill="#555">${t}×</text>`);
  }
  figs.forEach((f, i) => {
    const y0 = top + i * groupH;
    out.push(`<text x="${left - 8}" y="${y0 + (shown.length * bar) / 2 + 4}" text-anchor="end">${esc(f.label)}</text>`);
    shown.forEach((c, j) => {
      const g = goodness(f, c);
      if (g === undefined) return;
      const y = y0 + j * bar;
      out.push(`<rect x="${left}" y="${y}" width="${Math.max(1, x(g) - left)}" height="${bar - 2}" fill="${color[c]}"><title>${esc(`${TITLE[c]}: ${fmt(f.median[c])} ${f.unit}`)}</title></rect>`);
      out.push(`<text x="${x(g) + 4}" y="${y + bar - 3}" font-size="10" fill="#333">${fmt(g)}×${g > max ? ' →' : ''}</text>`);
    });
  });
  const ly = height - 10;
  shown.forEach((c, j) => {
    out.push(`<rect x="${12 + j * 110}" y="${ly - 10}" width="12" height="10" fill="${color[c]}"/><text x="${28 + j * 110}" y="${ly}">${TITLE[c]}</text>`);
  });
  out.push(`<line x1="${12 + shown.length * 110}" y1="${ly - 5}" x2="${34 + shown.length * 110}" y2="${ly - 5}" stroke="#d62728" stroke-dasharray="4 3" stroke-width="1.5"/><text x="${40 + shown.length * 110}" y="${ly}">HAProxy</text>`);
  out.push('</svg>', '');
  return out.join('\n');
}

/**
 * `text` with this machine's paths replaced: the node binary by `node`, the checkout by `.`, the
 * temp dir by `$TMPDIR`, the home dir by `~` (results are committed and shared).
 */
export function portable(text: string, root: string): string {
  const swaps: Array<[string, string]> = [
    [process.execPath, 'node'],
    [root, '.'],
    [os.tmpdir(), '$TMPDIR'],
    [os.homedir(), '~'],
  ];
  let out = text;
  for (const [from, to] of swaps) if (from.length > 1) out = out.split(from).join(to);
  return out;
}
