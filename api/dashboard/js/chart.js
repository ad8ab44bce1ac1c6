// A small line chart on <canvas>: axes with ticks and labels, a legend, points joined by lines.

const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4"];
const M = { left: 64, right: 16, top: 28, bottom: 44 };

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

/**
 * Draw ``series`` ([{name, xs, ys, dash?}], null ys skipped; ``dash``: a dashed line) on ``canvas``. ``logY`` plots log10(y)
 * with the axis saying so. Sets ``canvas.dataset.series`` (the names drawn) and
 * ``canvas.dataset.points`` (points drawn) so a test can tell a drawn chart from an empty one.
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
  const pw = w - M.left - M.right, ph = hgt - M.top - M.bottom;
  const px = (x) => M.left + ((x - xr[0]) / (xr[1] - xr[0])) * pw;
  const py = (y) => M.top + ph - ((y - yr[0]) / (yr[1] - yr[0])) * ph;

  // Grid, ticks and axis labels.
  ctx.strokeStyle = "#d0d7de";
  ctx.fillStyle = "#24292f";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of niceTicks(yr[0], yr[1])) {
    ctx.beginPath(); ctx.moveTo(M.left, py(v)); ctx.lineTo(M.left + pw, py(v)); ctx.stroke();
    ctx.fillText(fmtTick(logY ? Number((10 ** v).toPrecision(3)) : v), M.left - 6, py(v));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const v of niceTicks(xr[0], xr[1], 8)) {
    ctx.beginPath(); ctx.moveTo(px(v), M.top); ctx.lineTo(px(v), M.top + ph); ctx.stroke();
    ctx.fillText(fmtTick(v), px(v), M.top + ph + 6);
  }
  ctx.strokeStyle = "#57606a";
  ctx.strokeRect(M.left, M.top, pw, ph);
  ctx.fillText(xLabel, M.left + pw / 2, hgt - 16);
  ctx.save();
  ctx.translate(14, M.top + ph / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText(logY ? `${yLabel} (log scale)` : yLabel, 0, 0);
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
  let lx = M.left;
  data.forEach((s, k) => {
    ctx.fillStyle = COLORS[k % COLORS.length];
    ctx.fillRect(lx, 10, 14, 4);
    ctx.fillStyle = "#24292f";
    ctx.fillText(s.name, lx + 18, 12);
    lx += 28 + ctx.measureText(s.name).width;
  });
  if (title) { ctx.textAlign = "right"; ctx.fillText(title, M.left + pw, 12); }
  canvas.dataset.series = data.map((s) => s.name).join(",");
  canvas.dataset.points = String(points);
}
