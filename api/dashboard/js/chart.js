// A small line chart on <canvas>: axes with ticks and labels, a legend, points joined by lines.

const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4"];
// Margins: the left one is measured (y title, gap, the widest tick label, gap), the top one grows
// with the legend's rows.
const M = { right: 16, bottom: 44, edge: 4, gap: 6, legendRow: 18 };

/** About ``count`` round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function extent(values) {
  const v = values.filter((x) => x !== null && Number.isFinite(x));
  if (!v.length) return null;
  let lo = Math.min(...v), hi = Math.max(...v);
  if (lo === hi) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

const fmtTick = (v) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(1) : String(Number(v.toPrecision(4))));

/** Legend items placed left to right, wrapping into rows that fit ``width`` from ``x0``. */
function legendLayout(ctx, names, x0, width) {
  const items = [];
  let x = x0, row = 0;
  for (const name of names) {
    const w = 18 + ctx.measureText(name).width;
    if (x > x0 && x + w > x0 + width) { x = x0; row += 1; }
    items.push({ name, x, y: 12 + row * M.legendRow });
    x += w + 10;
  }
  return { items, rows: row + 1 };
}

/**
 * Draw ``series`` ([{name, xs, ys, dash?}], null ys skipped; ``dash``: a dashed line) on ``canvas``. ``logY`` plots log10(y)
 * with the axis saying so. Sets ``canvas.dataset.series`` (the names drawn) and
 * ``canvas.dataset.points`` (points drawn) so a test can tell a drawn chart from an empty one, and
 * ``canvas.dataset.plotLeft`` and ``plotTop`` (the plot area's left and top edges, CSS pixels).
 */
export function drawChart(canvas, { series, xLabel, yLabel, logY = false, title = "" }) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600, hgt = canvas.clientHeight || 300;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(hgt * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  ctx.font = "12px system-ui, sans-serif";
  const ty = (y) => (y === null || !Number.isFinite(y) ? null : logY ? (y > 0 ? Math.log10(y) : null) : y);
  const data = series.map((s) => ({ ...s, ys: s.ys.map(ty) }));
  const xr = extent(data.flatMap((s) => s.xs));
  const yr = extent(data.flatMap((s) => s.ys));
  let points = 0;
  if (!xr || !yr) {
    ctx.fillStyle = "#57606a";
    ctx.fillText("no data yet", w / 2 - 30, hgt / 2);
    canvas.dataset.series = "";
    canvas.dataset.points = "0";
    return;
  }

  // Layout: the y title, then the tick labels, never overlapping, whatever their width.
  const yTitle = logY ? `${yLabel} (log scale)` : yLabel;
  const yTicks = niceTicks(yr[0], yr[1]).map((v) => [v, fmtTick(logY ? Number((10 ** v).toPrecision(3)) : v)]);
  const tickWidth = Math.max(...yTicks.map(([, label]) => ctx.measureText(label).width));
  ctx.textBaseline = "middle";
  const tm = ctx.measureText(yTitle);  // rotated a quarter turn: its ascent lies left of its baseline, descent right
  const titleX = M.edge + tm.actualBoundingBoxAscent;
  const left = Math.ceil(titleX + tm.actualBoundingBoxDescent + M.gap + tickWidth + M.gap);
  const legend = legendLayout(ctx, data.map((s) => s.name), left, w - left - M.right - (title ? ctx.measureText(title).width + 16 : 0));
  const top = 16 + legend.rows * M.legendRow;
  const pw = w - left - M.right, ph = hgt - top - M.bottom;
  const px = (x) => left + ((x - xr[0]) / (xr[1] - xr[0])) * pw;
  const py = (y) => top + ph - ((y - yr[0]) / (yr[1] - yr[0])) * ph;

  // Grid, ticks and axis labels.
  ctx.strokeStyle = "#d0d7de";
  ctx.fillStyle = "#24292f";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  for (const [v, label] of yTicks) {
    ctx.beginPath(); ctx.moveTo(left, py(v)); ctx.lineTo(left + pw, py(v)); ctx.stroke();
    ctx.fillText(label, left - M.gap, py(v));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const v of niceTicks(xr[0], xr[1], 8)) {
    ctx.beginPath(); ctx.moveTo(px(v), top); ctx.lineTo(px(v), top + ph); ctx.stroke();
    ctx.fillText(fmtTick(v), px(v), top + ph + 6);
  }
  ctx.strokeStyle = "#57606a";
  ctx.strokeRect(left, top, pw, ph);
  ctx.fillText(xLabel, left + pw / 2, hgt - 16);
  ctx.save();
  ctx.translate(titleX, top + ph / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText(yTitle, 0, 0);
  ctx.restore();

  // Series: lines through the points, a dot at each.
  data.forEach((s, k) => {
    const color = COLORS[k % COLORS.length];
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 2;
    ctx.setLineDash(s.dash ? [6, 4] : []);
    ctx.beginPath();
    let pen = false;
    s.xs.forEach((x, i) => {
      const y = s.ys[i];
      if (y === null) { pen = false; return; }
      if (pen) ctx.lineTo(px(x), py(y)); else ctx.moveTo(px(x), py(y));
      pen = true;
    });
    ctx.stroke();
    ctx.setLineDash([]);
    s.xs.forEach((x, i) => {
      if (s.ys[i] === null) return;
      ctx.beginPath(); ctx.arc(px(x), py(s.ys[i]), 2.5, 0, 2 * Math.PI); ctx.fill();
      points += 1;
    });
  });

  // Legend and title.
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  legend.items.forEach(({ name, x, y }, k) => {
    ctx.fillStyle = COLORS[k % COLORS.length];
    ctx.fillRect(x, y - 2, 14, 4);
    ctx.fillStyle = "#24292f";
    ctx.fillText(name, x + 18, y);
  });
  if (title) { ctx.textAlign = "right"; ctx.fillText(title, left + pw, 12); }
  canvas.dataset.series = data.map((s) => s.name).join(",");
  canvas.dataset.points = String(points);
  canvas.dataset.plotLeft = String(left);
  canvas.dataset.plotTop = String(top);
}
