/** Small offline SVG charts for the report page: no scripts, no fonts or styles from anywhere. */

export interface Series {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
  /** Draw points only (a scatter), not a line. */
  readonly dots?: boolean;
}

export interface ChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  /** Horizontal reference lines, e.g. a threshold. */
  readonly rules?: readonly { readonly y: number; readonly label: string }[];
  readonly width?: number;
  readonly height?: number;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** 1, 2 or 5 times a power of ten, so that about `n` steps cover `span`. */
function niceStep(span: number, n: number): number {
  const raw = span / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

const fmt = (v: number): string =>
  Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : String(Number(v.toPrecision(3)));

/** A line (or scatter) chart as a standalone <svg> element. Empty series draw an empty frame. */
export function chart(o: ChartOptions): string {
  const W = o.width ?? 640;
  const H = o.height ?? 320;
  const L = 64;
  const R = 16;
  const T = 32;
  const B = 48;
  const pts = o.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const ys = [...pts.map((p) => p[1]), ...(o.rules ?? []).map((r) => r.y)];
  const xs = pts.map((p) => p[0]);
  const x0 = xs.length ? Math.min(...xs) : 0;
  let x1 = xs.length ? Math.max(...xs) : 1;
  if (x1 <= x0) x1 = x0 + 1;
  const y0 = Math.min(0, ...ys);
  let y1 = ys.length ? Math.max(...ys) * 1.1 : 1;
  if (y1 <= y0) y1 = y0 + 1;
  const sx = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">${esc(o.title)}</text>`,
  );
  const ystep = niceStep(y1 - y0, 5);
  for (let v = Math.ceil(y0 / ystep) * ystep; v <= y1; v += ystep) {
    out.push(
      `<line x1="${L}" x2="${W - R}" y1="${sy(v)}" y2="${sy(v)}" stroke="#e5e5e5"/>`,
      `<text x="${L - 6}" y="${sy(v) + 4}" text-anchor="end">${fmt(v)}</text>`,
    );
  }
  const xstep = niceStep(x1 - x0, 8);
  for (let v = Math.ceil(x0 / xstep) * xstep; v <= x1; v += xstep) {
    out.push(`<text x="${sx(v)}" y="${H - B + 16}" text-anchor="middle">${fmt(v)}</text>`);
  }
  out.push(
    `<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#333"/>`,
    `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(14 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`,
  );
  for (const r of o.rules ?? []) {
    out.push(
      `<line x1="${L}" x2="${W - R}" y1="${sy(r.y)}" y2="${sy(r.y)}" stroke="#999" stroke-dasharray="4 3"/>`,
      `<text x="${W - R - 2}" y="${sy(r.y) - 3}" text-anchor="end" fill="#666">${esc(r.label)}</text>`,
    );
  }
  o.series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length]!;
    const p = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    // Points are drawn when few (a one-period run has a single point and no line).
    if (s.dots || p.length <= 30) {
      for (const [x, y] of p) out.push(`<circle cx="${sx(x)}" cy="${sy(y)}" r="2.5" fill="${c}"/>`);
    }
    if (!s.dots && p.length > 1) {
      const d = p
        .map(([x, y], k) => `${k === 0 ? 'M' : 'L'}${sx(x).toFixed(1)} ${sy(y).toFixed(1)}`)
        .join(' ');
      out.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="1.8"/>`);
    }
    out.push(
      `<rect x="${L + 8 + i * 130}" y="${T + 2}" width="10" height="10" fill="${c}"/>`,
      `<text x="${L + 22 + i * 130}" y="${T + 11}">${esc(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}
