// One latent's page: its id comes from the URL's hash (latent.html#17); its data file
// (data/latents/000017.js) is loaded only then and hands its JSON to revelioLatent, which draws
// the statistics, the top images with the latent's heat map over each (a canvas of the map's
// cells, scaled by the browser), the activation histogram, the classes of the top images as
// bars and the nearest latents by decoder cosine. Previous and next follow the rank order of
// the latents that have pages (REVELIO_META.ranked).
"use strict";

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fixed(v, digits) { return v === null ? "-" : Number(v).toFixed(digits); }

// The heat map: cell values 0-255 (base64) as red with opacity up to 0.6.
function heatCanvas(map) {
  const c = el("canvas", { width: map.w, height: map.h, class: "heat" });
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(map.w, map.h);
  const bytes = atob(map.data);
  for (let i = 0; i < bytes.length; i++) {
    img.data[4 * i] = 255;
    img.data[4 * i + 3] = Math.round(0.6 * bytes.charCodeAt(i));
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

// Bars of the positive activations' histogram (bins over (0, range]), up to the last used bin.
function histogram(h, images) {
  const last = h.counts.reduce((m, c, i) => (c > 0 ? i : m), -1);
  const W = 480, H = 170, L = 40, B = 30, bins = h.counts.slice(0, last + 1);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "hist");
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  const add = (tag, attrs, text) => {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
  };
  const max = Math.max(1, ...bins);
  const bw = (W - L - 10) / Math.max(1, bins.length);
  bins.forEach((c, i) => {
    const bh = (c / max) * (H - B - 10);
    add("rect", { x: L + i * bw, y: H - B - bh, width: Math.max(1, bw - 1), height: bh }, undefined);
  });
  add("line", { x1: L, y1: H - B, x2: W - 10, y2: H - B, stroke: "#222" });
  add("text", { x: L, y: H - B + 14 }, "0");
  add("text", { x: W - 10, y: H - B + 14, "text-anchor": "end" }, fixed((h.range * bins.length) / h.counts.length, 3));
  add("text", { x: L - 4, y: 14, "text-anchor": "end" }, String(max));
  add("text", { x: (L + W) / 2, y: H - 4, "text-anchor": "middle" }, "activation (" + h.zero + " of " + images + " images at 0, not shown)");
  return svg;
}

function revelioLatent(d) {
  const meta = REVELIO_META;
  document.title = meta.title + ": latent " + d.id;
  document.getElementById("title").textContent =
    "Latent " + d.id + (d.label === null ? "" : ": " + d.label) + " (rank " + d.rank + " of " + meta.d_sae + ")";
  const root = document.getElementById("latent");
  root.textContent = "";

  const stats = el("table", { class: "numbers", id: "stats" });
  for (const [k, v] of [["active on", d.count + " of " + meta.images + " images"], ["frequency", Number(d.frequency).toPrecision(3)],
    ["mean activation", fixed(d.mean_act, 4)], ["sigma (top-10 class ids)", fixed(d.sigma, 3)],
    ["majority (top-10)", fixed(d.majority, 2)], ["entropy (bits)", fixed(d.entropy, 3)]]) {
    const tr = stats.insertRow();
    tr.appendChild(el("th", {}, k));
    tr.insertCell().textContent = v;
  }
  root.appendChild(stats);

  root.appendChild(el("h2", {}, "Top images"));
  if (d.top.length === 0) {
    root.appendChild(el("p", { class: "note" }, "This latent is not active on any analysed image."));
  } else {
    const maps = d.top.some((t) => t.map !== null);
    const caption = maps ? "Red: where the latent fires (each map scaled by the largest over these images). " : (meta.maps ? "" : "No heat maps: the store keeps no positions. ");
    const p = el("p", {}, caption + d.top.length + " of the " + d.top_kept + " top images kept are active.");
    if (maps) {
      const box = el("input", { type: "checkbox", id: "heat-toggle", checked: "" });
      box.addEventListener("change", () => tiles.classList.toggle("heat-off", !box.checked));
      const label = el("label", {}, " heat maps");
      label.prepend(box);
      p.appendChild(label);
    }
    root.appendChild(p);
    const tiles = el("div", { class: "tiles", id: "tiles" });
    for (const t of d.top) {
      const tile = el("div", { class: "tile" + (t.missing ? " missing" : "") });
      const frame = el("div", { class: "frame" });
      frame.appendChild(el("img", { src: t.thumb, alt: "image " + t.image }));
      if (t.map) frame.appendChild(heatCanvas(t.map));
      tile.appendChild(frame);
      tile.appendChild(el("div", {}, "image " + t.image + ": " + fixed(t.activation, 3)));
      tile.appendChild(el("div", {}, t.missing ? "could not be read" : t.label));
      tiles.appendChild(tile);
    }
    root.appendChild(tiles);
  }

  const side = el("div", { class: "side-by-side" });
  const hist = el("div", { id: "histogram" });
  hist.appendChild(el("h2", {}, "Activation histogram"));
  if (d.hist.range > 0) hist.appendChild(histogram(d.hist, meta.images));
  else hist.appendChild(el("p", {}, "No positive activation."));
  side.appendChild(hist);

  const classes = el("div", { id: "classes" });
  classes.appendChild(el("h2", {}, "Classes of the top images"));
  const counts = new Map();
  for (const t of d.top) counts.set(t.label, (counts.get(t.label) || 0) + 1);
  const ct = el("table", {});
  for (const [label, c] of [...counts].sort((a, b) => b[1] - a[1])) {
    const tr = ct.insertRow();
    tr.insertCell().textContent = label;
    const bar = tr.insertCell();
    bar.appendChild(el("span", { class: "bar", style: "width:" + Math.round((120 * c) / d.top.length) + "px" }));
    bar.appendChild(document.createTextNode(" " + c));
  }
  classes.appendChild(ct);
  side.appendChild(classes);

  const near = el("div", { id: "neighbours" });
  near.appendChild(el("h2", {}, "Nearest latents (decoder cosine)"));
  const nt = el("table", { class: "numbers" });
  for (const n of d.neighbours) {
    const tr = nt.insertRow();
    const id = tr.insertCell();
    id.appendChild(n.page ? el("a", { href: "latent.html#" + n.id }, String(n.id)) : document.createTextNode(String(n.id)));
    tr.insertCell().textContent = fixed(n.cosine, 3);
    tr.insertCell().textContent = n.label === null ? "-" : n.label;
  }
  near.appendChild(nt);
  side.appendChild(near);
  root.appendChild(side);

  if (d.grid) {
    const p = el("p", {});
    p.appendChild(el("a", { href: d.grid }, "grid PNG of the top images"));
    root.appendChild(p);
  }
}

(function () {
  function notes() {
    const box = document.getElementById("notes");
    box.textContent = "";
    for (const n of REVELIO_META.notes) box.appendChild(el("p", { class: "note" }, n));
  }

  function load() {
    const meta = REVELIO_META;
    const hash = location.hash.slice(1);
    const id = hash === "" && meta.ranked.length ? meta.ranked[0] : Number(hash);
    const pos = meta.ranked.indexOf(id);
    const link = (a, target) => {
      if (target === undefined) a.removeAttribute("href");
      else a.href = "#" + target;
    };
    link(document.getElementById("prev"), pos > 0 ? meta.ranked[pos - 1] : undefined);
    link(document.getElementById("next"), pos >= 0 && pos + 1 < meta.ranked.length ? meta.ranked[pos + 1] : undefined);
    const status = el("p", { class: "note", id: "status" });
    const root = document.getElementById("latent");
    root.textContent = "";
    root.appendChild(status);
    if (!Number.isInteger(id) || id < 0 || id >= meta.d_sae) {
      status.textContent = "\"" + hash + "\" is not a latent of this SAE: it has " + meta.d_sae + " latents, ids 0 to " + (meta.d_sae - 1) + ".";
      return;
    }
    if (pos < 0) {
      status.textContent = "Latent " + id + " has no page in this report (pages were written for " + meta.ranked.length + " latents; see sae analyze --latents).";
      return;
    }
    status.textContent = "Loading latent " + id + "...";
    const script = document.createElement("script");
    script.src = "data/latents/" + String(id).padStart(6, "0") + ".js";
    script.onerror = () => { status.textContent = "The data of latent " + id + " (" + script.src + ") could not be loaded: the report folder is incomplete."; };
    document.head.appendChild(script);
  }

  document.addEventListener("DOMContentLoaded", function () { notes(); load(); });
  window.addEventListener("hashchange", load);
})();
