// flexcore latent explorer: scatter of the particles' latents, the structure at the nearest
// precomputed grid node, box and lasso selection into named subsets, saved as selection.json.
// Data: the JSON in <script id="flexdata">, written by flexcore.stages.explore.page.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("flexdata").textContent);
  const N = D.n, K = D.k;
  // subsets in warm colours, unselected particles shaded grey → blue by local density
  const COLOURS = ["#e6194b", "#f58231", "#3cb44b", "#f032e6", "#9a6324", "#111111", "#911eb4", "#808000"];
  const RAMP = [[205, 205, 205], [158, 202, 225], [66, 146, 198], [8, 81, 156], [8, 48, 107]];
  const BINS = Math.max(12, Math.min(96, Math.round(Math.sqrt(N) / 1.5)));  // density grid
  const DOT = N < 5000 ? 3.2 : 2.2;

  function bytesOf(b64) {
    const bin = atob(b64), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  const Z = new Float32Array(bytesOf(D.latents).buffer);      // (N, K) row-major
  const drawn = D.drawn ? new Uint32Array(bytesOf(D.drawn).buffer) : null;  // indices drawn
  const nDrawn = drawn ? drawn.length : N;
  const drawnIndex = (j) => (drawn ? drawn[j] : j);

  const canvas = document.getElementById("plot");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  const M = { l: 52, r: 14, t: 14, b: 44 };
  const img = document.getElementById("structure-image");
  const imgLabel = document.getElementById("structure-label");

  let view = D.views[0];
  const X = new Float64Array(N), Y = new Float64Array(N);
  let range = null, area = null, density = null, shownNode = -1, drag = null, tool = "lasso";
  const subsets = [];
  let active = 0;

  // ------------------------------------------------------------ coordinates of a view
  // K = 1: x = z1, y = a low-discrepancy jitter in [-1, 1) (the same in Python: frac(i·φ⁻¹)·2−1)
  const jitter = (i) => 2 * ((i * 0.6180339887498949) % 1) - 1;
  function pcaScores(i, out) {
    const m = D.pca.mean, c = D.pca.components;
    let a = 0, b = 0;
    for (let k = 0; k < K; k++) { const d = Z[i * K + k] - m[k]; a += d * c[0][k]; b += d * c[1][k]; }
    out[0] = a; out[1] = b;
    return out;
  }
  function computeView() {
    const tmp = [0, 0];
    for (let i = 0; i < N; i++) {
      if (view.kind === "strip") { X[i] = Z[i * K + view.dims[0]]; Y[i] = jitter(i); }
      else if (view.kind === "pca") { pcaScores(i, tmp); X[i] = tmp[0]; Y[i] = tmp[1]; }
      else { X[i] = Z[i * K + view.dims[0]]; Y[i] = Z[i * K + view.dims[1]]; }
    }
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < N; i++) {
      if (X[i] < x0) x0 = X[i]; if (X[i] > x1) x1 = X[i];
      if (Y[i] < y0) y0 = Y[i]; if (Y[i] > y1) y1 = Y[i];
    }
    const g = gridAxesInView();
    if (g) {
      x0 = Math.min(x0, g[0][0]); x1 = Math.max(x1, g[0][g[0].length - 1]);
      if (g[1]) { y0 = Math.min(y0, g[1][0]); y1 = Math.max(y1, g[1][g[1].length - 1]); }
    }
    const px = 0.05 * (x1 - x0 || 1), py = 0.05 * (y1 - y0 || 1);
    range = { x0: x0 - px, x1: x1 + px, y0: y0 - py, y1: y1 + py };
    const top = view.kind === "strip" ? M.t + 0.32 * (H - M.t - M.b) : M.t;
    area = { l: M.l, r: W - M.r, t: top, b: H - M.b, histTop: M.t };
    const counts = new Uint32Array(BINS * BINS);
    for (let i = 0; i < N; i++) counts[binOf(X[i], Y[i])]++;
    density = new Float64Array(BINS * BINS);  // 3 × 3 box average of the counts
    for (let by = 0; by < BINS; by++) for (let bx = 0; bx < BINS; bx++) {
      let sum = 0, cells = 0;
      for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
        const x = bx + dx, y = by + dy;
        if (x >= 0 && y >= 0 && x < BINS && y < BINS) { sum += counts[y * BINS + x]; cells++; }
      }
      density[by * BINS + bx] = sum / cells;
    }
  }
  function binOf(x, y) {
    const bx = Math.min(BINS - 1, Math.max(0, Math.floor((x - range.x0) / (range.x1 - range.x0) * BINS)));
    const by = Math.min(BINS - 1, Math.max(0, Math.floor((y - range.y0) / (range.y1 - range.y0) * BINS)));
    return by * BINS + bx;
  }
  // the grid axes drawn in this view (latent axes for K <= 2, principal-component scores for
  // the PCA view), or null where the grid is not a plane of the view
  function gridAxesInView() {
    if (D.grid.kind === "latent" && view.kind !== "pca") return D.grid.axes;
    if (D.grid.kind === "pca" && view.kind === "pca") return D.grid.axes;
    return null;
  }
  const sx = (x) => area.l + (x - range.x0) / (range.x1 - range.x0) * (area.r - area.l);
  const sy = (y) => area.b - (y - range.y0) / (range.y1 - range.y0) * (area.b - area.t);
  const dataX = (px) => range.x0 + (px - area.l) / (area.r - area.l) * (range.x1 - range.x0);
  const dataY = (py) => range.y0 + (area.b - py) / (area.b - area.t) * (range.y1 - range.y0);

  // ------------------------------------------------------------ drawing
  function rampColour(t) {
    const s = Math.min(0.9999, Math.max(0, t)) * (RAMP.length - 1), i = Math.floor(s), f = s - i;
    const a = RAMP[i], b = RAMP[i + 1];
    return `rgb(${a.map((v, c) => Math.round(v + f * (b[c] - v))).join(",")})`;
  }
  function ticks(lo, hi) {
    const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / 4)));
    const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => (hi - lo) / s <= 6);
    const out = [];
    for (let v = Math.ceil(lo / nice) * nice; v <= hi; v += nice) out.push(Math.abs(v) < 1e-12 ? 0 : v);
    return out;
  }
  function drawAxes() {
    ctx.strokeStyle = "#444"; ctx.fillStyle = "#222"; ctx.lineWidth = 1; ctx.font = "11px sans-serif";
    ctx.strokeRect(area.l, area.t, area.r - area.l, area.b - area.t);
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (const v of ticks(range.x0, range.x1)) {
      ctx.beginPath(); ctx.moveTo(sx(v), area.b); ctx.lineTo(sx(v), area.b + 4); ctx.stroke();
      ctx.fillText(v.toFixed(2).replace(/\.?0+$/, ""), sx(v), area.b + 6);
    }
    ctx.fillText(view.axes[0], (area.l + area.r) / 2, H - 16);
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const v of ticks(range.y0, range.y1)) {
      ctx.beginPath(); ctx.moveTo(area.l - 4, sy(v)); ctx.lineTo(area.l, sy(v)); ctx.stroke();
      ctx.fillText(v.toFixed(2).replace(/\.?0+$/, ""), area.l - 6, sy(v));
    }
    ctx.save(); ctx.translate(14, (area.t + area.b) / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center"; ctx.fillText(view.axes[1], 0, 0); ctx.restore();
  }
  function drawHistogram() {  // K = 1: all particles grey, each subset in its colour
    const nb = 80, top = area.histTop, bottom = area.t - 8, h = bottom - top;
    const hist = (pick) => {
      const c = new Uint32Array(nb);
      for (let i = 0; i < N; i++) if (pick(i)) c[Math.min(nb - 1, Math.max(0, Math.floor((X[i] - range.x0) / (range.x1 - range.x0) * nb)))]++;
      return c;
    };
    const all = hist(() => true), peak = Math.max(1, ...all), bw = (area.r - area.l) / nb;
    const bars = (c, colour) => {
      ctx.fillStyle = colour;
      for (let b = 0; b < nb; b++) if (c[b]) ctx.fillRect(area.l + b * bw, bottom - c[b] / peak * h, bw - 0.5, c[b] / peak * h);
    };
    bars(all, "#bbb");
    subsets.forEach((s) => { if (s.count) bars(hist((i) => s.members[i]), s.colour + "bb"); });
    ctx.fillStyle = "#222"; ctx.font = "11px sans-serif"; ctx.textAlign = "left"; ctx.textBaseline = "top";
    ctx.fillText(`histogram of ${view.axes[0]} (${N} particles)`, area.l + 4, top);
  }
  function drawRegion(r, colour, dashed) {
    ctx.strokeStyle = colour; ctx.lineWidth = 1.5; ctx.setLineDash(dashed ? [5, 3] : []);
    ctx.beginPath();
    if (r.kind === "box") ctx.rect(sx(r.x[0]), sy(r.y[1]), sx(r.x[1]) - sx(r.x[0]), sy(r.y[0]) - sy(r.y[1]));
    else r.vertices.forEach(([x, y], i) => (i ? ctx.lineTo(sx(x), sy(y)) : ctx.moveTo(sx(x), sy(y))));
    if (r.kind === "lasso") ctx.closePath();
    ctx.stroke(); ctx.setLineDash([]);
  }
  function draw() {
    ctx.clearRect(0, 0, W, H);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
    if (view.kind === "strip") drawHistogram();
    let peak = 1e-9;
    for (let b = 0; b < density.length; b++) if (density[b] > peak) peak = density[b];
    const lp = Math.log1p(peak);
    ctx.save(); ctx.beginPath(); ctx.rect(area.l, area.t, area.r - area.l, area.b - area.t); ctx.clip();
    const owner = new Int16Array(N).fill(-1);
    subsets.forEach((s, k) => { for (let i = 0; i < N; i++) if (s.members[i] && owner[i] < 0) owner[i] = k; });
    for (let j = 0; j < nDrawn; j++) {
      const i = drawnIndex(j);
      ctx.fillStyle = owner[i] >= 0 ? subsets[owner[i]].colour : rampColour(Math.log1p(density[binOf(X[i], Y[i])]) / lp);
      ctx.fillRect(sx(X[i]) - DOT / 2, sy(Y[i]) - DOT / 2, DOT, DOT);
    }
    const g = gridAxesInView();
    if (g && shownNode >= 0) {  // the node whose structure is shown
      const a = g.length === 1 ? shownNode : Math.floor(shownNode / g[1].length);
      const px = sx(g[0][a]), py = g.length === 1 ? area.b - 10 : sy(g[1][shownNode % g[1].length]);
      ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.moveTo(px - 7, py); ctx.lineTo(px + 7, py); ctx.moveTo(px, py - 7); ctx.lineTo(px, py + 7); ctx.stroke();
    }
    subsets.forEach((s, k) => s.regions.forEach((r) => { if (r.view === view.id) drawRegion(r, s.colour, k !== active); }));
    if (drag) drawRegion(drag.region, subsets[active].colour, false);
    ctx.restore();
    drawAxes();
  }

  // ------------------------------------------------------------ the structure at a latent
  function nearest(values, v) {
    let best = 0;
    for (let i = 1; i < values.length; i++) if (Math.abs(values[i] - v) < Math.abs(values[best] - v)) best = i;
    return best;
  }
  function nodeAt(px, py) {
    const ax = D.grid.axes;
    if (gridAxesInView()) {
      if (ax.length === 1) return nearest(ax[0], dataX(px));
      return nearest(ax[0], dataX(px)) * ax[1].length + nearest(ax[1], dataY(py));
    }
    // an axis-pair view of K > 2: the nearest drawn particle's latent, on the PCA grid
    let best = -1, bd = 30 * 30;
    for (let j = 0; j < nDrawn; j++) {
      const i = drawnIndex(j), dx = sx(X[i]) - px, dy = sy(Y[i]) - py, d = dx * dx + dy * dy;
      if (d < bd) { bd = d; best = i; }
    }
    if (best < 0) return -1;
    const s = pcaScores(best, [0, 0]);
    return nearest(ax[0], s[0]) * ax[1].length + nearest(ax[1], s[1]);
  }
  function showNode(node) {
    if (node < 0 || node === shownNode) return;
    shownNode = node;
    img.src = "data:image/png;base64," + D.grid.images[node];
    img.dataset.node = String(node);
    const z = D.grid.latents[node].map((v) => v.toFixed(3)).join(", ");
    imgLabel.textContent = `grid node ${node + 1} of ${D.grid.images.length}: z = (${z})`;
  }

  // ------------------------------------------------------------ selection
  function inPolygon(x, y, V) {  // even-odd rule
    let inside = false;
    for (let i = 0, j = V.length - 1; i < V.length; j = i++) {
      const [xi, yi] = V[i], [xj, yj] = V[j];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }
  function applyRegion(s, r) {
    if (r.kind === "box") {
      for (let i = 0; i < N; i++) if (X[i] >= r.x[0] && X[i] <= r.x[1] && Y[i] >= r.y[0] && Y[i] <= r.y[1]) s.members[i] = 1;
    } else {
      const xs = r.vertices.map((v) => v[0]), ys = r.vertices.map((v) => v[1]);
      const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
      for (let i = 0; i < N; i++) {
        if (X[i] < x0 || X[i] > x1 || Y[i] < y0 || Y[i] > y1) continue;
        if (inPolygon(X[i], Y[i], r.vertices)) s.members[i] = 1;
      }
    }
    s.count = s.members.reduce((a, b) => a + b, 0);
  }
  function safeName(text) {
    let name = String(text).trim().replace(/[^A-Za-z0-9_.-]+/g, "_").replace(/^[.-]+/, "").slice(0, 64);
    if (!name) name = "subset";
    let out = name, n = 2;
    while (subsets.some((s, k) => k !== active && s.name === out)) out = `${name}_${n++}`;
    return out;
  }
  function newSubset() {
    let n = subsets.length + 1;
    while (subsets.some((s) => s.name === `subset${n}`)) n++;
    subsets.push({ name: `subset${n}`, colour: COLOURS[(subsets.length) % COLOURS.length], members: new Uint8Array(N), count: 0, regions: [] });
    active = subsets.length - 1;
    refresh();
  }
  function selectionRecord() {
    return {
      format: "flexcore-selection", version: 1, n_particles: N, latent_dim: K,
      latents_sha256: D.sha256, checkpoint: D.checkpoint, pca: D.pca,
      subsets: subsets.filter((s) => s.count > 0).map((s) => {
        const indices = [];
        for (let i = 0; i < N; i++) if (s.members[i]) indices.push(i);
        return { name: s.name, n_particles: s.count, indices, regions: s.regions };
      }),
    };
  }
  function save() {
    const rec = selectionRecord();
    const blob = new Blob([JSON.stringify(rec) + "\n"], { type: "application/json" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = "selection.json";
    document.body.appendChild(a); a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 2000);
    document.getElementById("status").textContent =
      `saved selection.json: ${rec.subsets.length} subset(s); use it with flexcore select --from selection.json`;
  }

  // ------------------------------------------------------------ user interface
  function refresh() {
    const list = document.getElementById("subset-list");
    list.innerHTML = "";
    subsets.forEach((s, k) => {
      const li = document.createElement("li");
      li.className = k === active ? "active" : "";
      li.dataset.name = s.name; li.dataset.count = String(s.count);
      li.innerHTML = `<span class="swatch" style="background:${s.colour}"></span><span class="name"></span> <span class="count"></span>`;
      li.querySelector(".name").textContent = s.name;
      li.querySelector(".count").textContent = `${s.count} particles (${(100 * s.count / N).toFixed(1)} %)`;
      li.addEventListener("click", () => { active = k; refresh(); });
      list.appendChild(li);
    });
    document.getElementById("subset-name").value = subsets[active].name;
    draw();
  }
  function eventXY(e) {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * (W / r.width), (e.clientY - r.top) * (H / r.height)];
  }
  canvas.addEventListener("mousedown", (e) => {
    if (e.button !== 0) return;
    const [px, py] = eventXY(e), x = dataX(px), y = dataY(py);
    const base = { view: view.id, axes: view.axes.slice() };
    drag = tool === "box" ? { x0: x, y0: y, region: { kind: "box", ...base, x: [x, x], y: [y, y] } }
      : { last: [px, py], region: { kind: "lasso", ...base, vertices: [[x, y]] } };
    e.preventDefault();
  });
  canvas.addEventListener("mousemove", (e) => {
    const [px, py] = eventXY(e);
    if (!drag) { showNode(nodeAt(px, py)); draw(); return; }
    const x = dataX(px), y = dataY(py), r = drag.region;
    if (r.kind === "box") { r.x = [Math.min(drag.x0, x), Math.max(drag.x0, x)]; r.y = [Math.min(drag.y0, y), Math.max(drag.y0, y)]; }
    else if (Math.hypot(px - drag.last[0], py - drag.last[1]) >= 2) { r.vertices.push([x, y]); drag.last = [px, py]; }
    draw();
  });
  window.addEventListener("mouseup", () => {
    if (!drag) return;
    const r = drag.region;
    drag = null;
    const ok = r.kind === "box" ? r.x[1] > r.x[0] && r.y[1] > r.y[0] : r.vertices.length >= 3;
    if (ok) { subsets[active].regions.push(r); applyRegion(subsets[active], r); }
    refresh();
  });
  document.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
  function setTool(t) {
    tool = t;
    document.querySelectorAll("[data-tool]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.tool === t)));
  }
  const viewPicker = document.getElementById("view");
  D.views.forEach((v) => { const o = document.createElement("option"); o.value = v.id; o.textContent = v.label; viewPicker.appendChild(o); });
  viewPicker.hidden = D.views.length < 2;
  viewPicker.addEventListener("change", () => setView(viewPicker.value));
  function setView(id) { view = D.views.find((v) => v.id === id); viewPicker.value = id; computeView(); draw(); }
  document.getElementById("new-subset").addEventListener("click", newSubset);
  document.getElementById("clear-subset").addEventListener("click", () => {
    const s = subsets[active]; s.members.fill(0); s.count = 0; s.regions = []; refresh();
  });
  document.getElementById("delete-subset").addEventListener("click", () => {
    subsets.splice(active, 1);
    if (!subsets.length) newSubset(); else { active = Math.min(active, subsets.length - 1); refresh(); }
  });
  document.getElementById("subset-name").addEventListener("change", (e) => {
    subsets[active].name = safeName(e.target.value); refresh();
  });
  document.getElementById("save").addEventListener("click", save);

  // for scripted use (tests, notebooks): data coordinates of the current view → canvas pixels
  window.flexExplorer = {
    toCanvas: (x, y) => [sx(x), sy(y)],
    viewCoordinates: (i) => [X[i], Y[i]],
    selectionRecord, setView, setTool,
    shownNode: () => shownNode,
  };
  computeView();
  newSubset();
  setTool("lasso");
  showNode(Math.floor(D.grid.images.length / 2));
  draw();
})();
