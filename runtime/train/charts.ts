/** Hand-written SVG charts for run reports (no browser or plotting library needed). */

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
// Eight distinct colours: `deno task compare` draws every built-in method (seven) and rsLoRA.
const colors = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#9467bd",
  "#ff7f0e",
  "#8c564b",
  "#e377c2",
  "#17becf",
];

/** A line chart of (x, y) series. */
export function lineChart(
  series: { name: string; points: [number, number][] }[],
  opts: { title: string; xLabel: string; yLabel: string; width?: number; height?: number },
): string {
  const W = opts.width ?? 640, H = opts.height ?? 360, L = 60, R = 20, T = 36, B = 44;
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs, 0), Math.max(...xs, 1)];
  const [y0, y1] = [Math.min(...ys, 0), Math.max(...ys, 1e-9)];
  const sx = (x: number) => L + ((x - x0) / (x1 - x0 || 1)) * (W - L - R);
  const sy = (y: number) => H - B - ((y - y0) / (y1 - y0 || 1)) * (H - T - B);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => y0 + f * (y1 - y0));
  const lines = series.map((s, i) => {
    const d = s.points.filter(([, y]) => Number.isFinite(y)).map(([x, y], j) =>
      `${j ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`
    ).join("");
    return `<path d="${d}" fill="none" stroke="${colors[i % colors.length]}" stroke-width="1.5"/>` +
      `<text x="${W - R - 4}" y="${T + 14 * (i + 1)}" text-anchor="end" fill="${
        colors[i % colors.length]
      }" font-size="12">${esc(s.name)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(opts.title)}</text>
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${
    H - B
  }" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>
${
    ticks.map((v) =>
      `<text x="${L - 6}" y="${sy(v) + 4}" text-anchor="end" font-size="11">${
        v.toPrecision(3)
      }</text>`
    ).join("\n")
  }
<text x="${L}" y="${H - B + 16}" font-size="11">${x0}</text><text x="${W - R}" y="${
    H - B + 16
  }" text-anchor="end" font-size="11">${x1}</text>
<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle" font-size="12">${
    esc(opts.xLabel)
  }</text>
<text x="14" y="${(T + H - B) / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 14 ${
    (T + H - B) / 2
  })">${esc(opts.yLabel)}</text>
${lines.join("\n")}
</svg>
`;
}

/** A bar chart of labelled values (grouped when several series are given). */
export function barChart(
  labels: string[],
  series: { name: string; values: number[] }[],
  opts: { title: string; yLabel: string; width?: number; height?: number },
): string {
  const W = opts.width ?? 640, H = opts.height ?? 360, L = 60, R = 20, T = 36, B = 60;
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values));
  const group = (W - L - R) / Math.max(1, labels.length);
  const bar = (group * 0.8) / Math.max(1, series.length);
  const rects = series.flatMap((s, si) =>
    s.values.map((v, i) => {
      const h = (v / max) * (H - T - B);
      const x = L + i * group + group * 0.1 + si * bar;
      return `<rect x="${x.toFixed(1)}" y="${(H - B - h).toFixed(1)}" width="${
        bar.toFixed(1)
      }" height="${h.toFixed(1)}" fill="${colors[si % colors.length]}"><title>${esc(s.name)} ${
        esc(labels[i])
      }: ${v}</title></rect>`;
    })
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(opts.title)}</text>
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>
<text x="${L - 6}" y="${T + 4}" text-anchor="end" font-size="11">${
    max.toPrecision(3)
  }</text><text x="${L - 6}" y="${H - B}" text-anchor="end" font-size="11">0</text>
<text x="14" y="${(T + H - B) / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 14 ${
    (T + H - B) / 2
  })">${esc(opts.yLabel)}</text>
${rects.join("\n")}
${
    labels.map((l, i) =>
      `<text x="${L + (i + 0.5) * group}" y="${H - B + 16}" text-anchor="middle" font-size="11">${
        esc(l)
      }</text>`
    ).join("\n")
  }
${
    series.map((s, i) =>
      `<text x="${W - R}" y="${T + 14 * (i + 1)}" text-anchor="end" fill="${
        colors[i % colors.length]
      }" font-size="12">${esc(s.name)}</text>`
    ).join("\n")
  }
</svg>
`;
}
