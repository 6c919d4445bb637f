// The explorer's index: the table of every latent in REVELIO_INDEX (data/index.js), searched by
// id or label (the majority class of its top images), sorted by a clicked column, shown PAGE
// rows at a time. The search and the sort live in the URL's hash (#q=circle&sort=-frequency), so
// a view can be bookmarked. Thumbnails are thumbs/NNNNNNN.jpg (the store's image index, 7 digits).
"use strict";
(function () {
  const PAGE = 50;
  const COL = { id: 0, rank: 1, count: 2, frequency: 3, mean_act: 4, sigma: 5, majority: 6, entropy: 7, label: 8, page: 9, strip: 10 };
  const rows = REVELIO_INDEX.rows;
  const state = { q: "", key: "rank", dir: 1, start: 0 };
  let view = rows;

  function thumb(i) { return "thumbs/" + String(i).padStart(7, "0") + ".jpg"; }
  function fixed(v, digits) { return v === null ? "-" : Number(v).toFixed(digits); }
  function sig(v) { return v === null ? "-" : Number(v).toPrecision(3); }

  function matches(r, q) {
    if (!q) return true;
    if (/^#?\d+$/.test(q)) return r[COL.id] === Number(q.replace("#", ""));
    return r[COL.label] !== null && r[COL.label].toLowerCase().includes(q.toLowerCase());
  }

  // Missing values (null) sort last in both directions; ties keep rank order.
  function compare(a, b) {
    const x = a[COL[state.key]], y = b[COL[state.key]];
    if (x === y) return a[COL.rank] - b[COL.rank];
    if (x === null) return 1;
    if (y === null) return -1;
    return (x < y ? -1 : 1) * state.dir;
  }

  function cell(tr, text, cls) {
    const td = tr.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function render() {
    const body = document.querySelector("#latents tbody");
    body.textContent = "";
    for (const r of view.slice(state.start, state.start + PAGE)) {
      const tr = body.insertRow();
      cell(tr, r[COL.rank], "num");
      const id = cell(tr, "", "num");
      if (r[COL.page]) {
        const a = document.createElement("a");
        a.href = "latent.html#" + r[COL.id];
        a.textContent = r[COL.id];
        id.appendChild(a);
      } else {
        id.textContent = r[COL.id];
      }
      cell(tr, sig(r[COL.frequency]), "num");
      cell(tr, fixed(r[COL.mean_act], 3), "num");
      cell(tr, fixed(r[COL.sigma], 3), "num");
      cell(tr, r[COL.label] === null ? "-" : r[COL.label]);
      cell(tr, fixed(r[COL.majority], 2), "num");
      cell(tr, fixed(r[COL.entropy], 2), "num");
      const strip = cell(tr, "", "strip");
      for (const i of r[COL.strip]) {
        const img = document.createElement("img");
        img.src = thumb(i);
        img.alt = "image " + i;
        img.title = "image " + i;
        strip.appendChild(img);
      }
    }
    const end = Math.min(state.start + PAGE, view.length);
    document.getElementById("shown").textContent =
      view.length ? (state.start + 1) + "-" + end + " of " + view.length + (view.length < rows.length ? " matching" : "") : "no latent matches";
    document.getElementById("prev").disabled = state.start === 0;
    document.getElementById("next").disabled = end >= view.length;
    for (const th of document.querySelectorAll("#latents th[data-key]")) {
      th.className = th.dataset.key === state.key ? (state.dir > 0 ? "sorted-asc" : "sorted-desc") : "";
    }
  }

  function update() {
    view = rows.filter((r) => matches(r, state.q.trim())).sort(compare);
    state.start = 0;
    const hash = new URLSearchParams();
    if (state.q) hash.set("q", state.q);
    if (state.key !== "rank" || state.dir !== 1) hash.set("sort", (state.dir < 0 ? "-" : "") + state.key);
    history.replaceState(null, "", hash.toString() ? "#" + hash : location.pathname);
    render();
  }

  document.addEventListener("DOMContentLoaded", function () {
    const hash = new URLSearchParams(location.hash.slice(1));
    state.q = hash.get("q") || "";
    const sort = hash.get("sort") || "rank";
    state.key = sort.replace("-", "") in COL ? sort.replace("-", "") : "rank";
    state.dir = sort.startsWith("-") ? -1 : 1;
    const search = document.getElementById("search");
    search.value = state.q;
    search.addEventListener("input", function () { state.q = search.value; update(); });
    for (const th of document.querySelectorAll("#latents th[data-key]")) {
      th.addEventListener("click", function () {
        // A new column sorts descending first, except rank and id; a second click reverses.
        if (state.key === th.dataset.key) state.dir = -state.dir;
        else { state.key = th.dataset.key; state.dir = th.dataset.key === "rank" || th.dataset.key === "id" || th.dataset.key === "label" ? 1 : -1; }
        update();
      });
    }
    document.getElementById("prev").addEventListener("click", function () { state.start = Math.max(0, state.start - PAGE); render(); });
    document.getElementById("next").addEventListener("click", function () { state.start += PAGE; render(); });
    update();
  });
})();
