// The labelling page (musetag label): one track at a time, tags by click or keys 1-9, Enter saves,
// S skips, U undoes. With an API key (401) the page asks for it, keeps it in sessionStorage and sends
// it on every request; the audio is fetched with the key too (a blob URL), never from an open route.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const annotator = sessionStorage.getItem("musetag-annotator") || ("tab-" + Math.random().toString(36).slice(2, 8));
  sessionStorage.setItem("musetag-annotator", annotator);
  let key = sessionStorage.getItem("musetag.apiKey") || "";
  let tags = [], selected = new Set(), current = null, skipped = [], audioUrl = null;

  async function api(path, opts = {}) {
    opts = Object.assign({}, opts);
    opts.headers = Object.assign({ "Content-Type": "application/json" }, opts.headers || {});
    if (key) opts.headers.Authorization = "Bearer " + key;
    const r = await fetch(path, opts);
    if (r.status === 401) { $("key-form").hidden = false; $("key").focus(); throw new Error("this server needs an API key: enter it above"); }
    if (!r.ok) { let m = r.statusText; try { m = (await r.json()).message; } catch (e) { /* keep */ } throw new Error(m); }
    return r;
  }
  const post = (path, body) => api(path, { method: "POST", body: JSON.stringify(body) }).then((r) => r.json());
  function status(text, isError) { $("status").textContent = text; $("status").className = isError ? "error" : ""; }

  function renderState(s) {
    const p = s.progress;
    const rate = p.tracks_per_s ? `, ${p.tracks_per_s} tracks/s` : "";
    $("progress").textContent = `${s.labelled} labelled · ${p.embedded}/${p.total} tracks embedded` +
      `${p.running ? " (embedding" + rate + ")" : rate ? " (" + rate.slice(2) + ")" : ""}` + (p.failed ? ` · ${p.failed} unreadable` : "");
    $("counts").innerHTML = "";
    for (const t of s.tags) {
      const li = document.createElement("li");
      li.textContent = `${t}: ${s.positives[t]}`;
      li.setAttribute("aria-label", `${t}: ${s.positives[t]} positive labels`);
      $("counts").appendChild(li);
    }
    $("failures").innerHTML = "";
    for (const f of s.failures) { const li = document.createElement("li"); li.textContent = `${f.path}: ${f.error}`; $("failures").appendChild(li); }
  }

  function renderButtons() {
    $("tag-buttons").innerHTML = "";
    tags.forEach((t, i) => {
      const b = document.createElement("button");
      b.type = "button"; b.className = "tag"; b.dataset.tag = t;
      b.setAttribute("aria-pressed", selected.has(t) ? "true" : "false");
      b.setAttribute("aria-label", `${t}${i < 9 ? " (key " + (i + 1) + ")" : ""}`);
      b.innerHTML = (i < 9 ? `<span class="key">${i + 1}</span>` : "") + t.replace(/[&<>]/g, (c) => "&#" + c.charCodeAt(0) + ";");
      b.addEventListener("click", () => toggle(t));
      $("tag-buttons").appendChild(b);
    });
  }
  function toggle(t) { if (selected.has(t)) selected.delete(t); else selected.add(t); renderButtons(); }

  function renderPredictions(preds) {
    $("predictions").innerHTML = "";
    for (const p of preds) {
      const li = document.createElement("li");
      li.className = "bar" + (p.score >= 0.5 ? " on" : "");
      li.setAttribute("aria-label", `${p.tag}: predicted ${(p.score * 100).toFixed(0)} percent`);
      li.innerHTML = `<span class="label"></span><span class="track"><span class="fill" style="width:${(p.score * 100).toFixed(1)}%"></span></span><span class="value">${p.score.toFixed(2)}</span>`;
      li.querySelector(".label").textContent = p.tag;
      $("predictions").appendChild(li);
    }
  }

  async function show(track) {
    current = track.path;
    selected = new Set(track.label || []);
    renderButtons();
    renderPredictions(track.predictions || []);
    if (!current) { $("filename").textContent = "No track to label yet (embedding, or everything is labelled)."; setTimeout(next, 3000); return; }
    $("filename").textContent = current + (track.label ? ` (labelled: ${track.label.join(", ") || "none"})` : "");
    try {
      const blob = await (await api("/v1/label/audio?path=" + encodeURIComponent(current))).blob();
      if (audioUrl) URL.revokeObjectURL(audioUrl);
      audioUrl = URL.createObjectURL(blob);
      $("audio").src = audioUrl;
    } catch (e) { status(e.message, true); }
  }

  async function next() {
    const q = new URLSearchParams({ rule: $("rule").value, annotator });
    skipped.forEach((s) => q.append("skip", s));
    try {
      const r = await (await api("/v1/label/next?" + q)).json();
      renderState(r.state);
      await show(r);
    } catch (e) { status(e.message, true); }
  }

  async function accept() {
    if (!current) return;
    try {
      const r = await post("/v1/label/label", { path: current, tags: tags.filter((t) => selected.has(t)), annotator });
      status(`saved ${current}: ${r.saved.tags.join(", ") || "none of the tags"} (model refit in ${r.refit_ms} ms)`);
      renderState(r.state);
      await next();
    } catch (e) { status(e.message, true); }
  }
  function skip() { if (current) { skipped.push(current); status(`skipped ${current}`); next(); } }
  async function undo() {
    try {
      const r = await post("/v1/label/undo", { annotator });
      renderState(r.state);
      if (r.undone) { status(`undid the label of ${r.undone}`); await show(r); } else status("nothing to undo");
    } catch (e) { status(e.message, true); }
  }

  async function review() {
    const tag = $("review-tag").value;
    try {
      const r = await (await api("/v1/label/review?tag=" + encodeURIComponent(tag) + "&limit=100")).json();
      $("review").innerHTML = "";
      for (const t of r.tracks) {
        const li = document.createElement("li");
        li.textContent = `${t.path} · ${t.score.toFixed(2)} · ${t.label === null ? "unlabelled" : (t.label.join(", ") || "none")}`;
        for (const [text, on] of [["is " + tag, true], ["is not " + tag, false]]) {
          const b = document.createElement("button");
          b.type = "button"; b.textContent = text; b.setAttribute("aria-label", `${t.path} ${text}`);
          b.addEventListener("click", async () => {
            const now = new Set(t.label || []);
            if (on) now.add(tag); else now.delete(tag);
            const res = await post("/v1/label/label", { path: t.path, tags: tags.filter((x) => now.has(x)), annotator });
            renderState(res.state); review();
          });
          li.appendChild(b);
        }
        $("review").appendChild(li);
      }
    } catch (e) { status(e.message, true); }
  }

  async function similar() {
    if (!current) return;
    try {
      const r = await (await api("/v1/label/similar?k=10&path=" + encodeURIComponent(current))).json();
      $("similar").innerHTML = "";
      for (const t of r.tracks) {
        const li = document.createElement("li");
        const b = document.createElement("button");
        b.type = "button"; b.textContent = "label this";
        b.setAttribute("aria-label", `label ${t.path}`);
        b.addEventListener("click", () => show({ path: t.path, predictions: [], label: t.label }));
        li.textContent = `${t.path} · ${t.similarity.toFixed(2)} · ${t.label === null ? "unlabelled" : (t.label.join(", ") || "none")} `;
        li.appendChild(b);
        $("similar").appendChild(li);
      }
    } catch (e) { status(e.message, true); }
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.target && ["INPUT", "SELECT", "TEXTAREA"].includes(ev.target.tagName)) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (/^[1-9]$/.test(ev.key) && tags[Number(ev.key) - 1] !== undefined) { toggle(tags[Number(ev.key) - 1]); ev.preventDefault(); }
    else if (ev.key === "Enter") { accept(); ev.preventDefault(); }
    else if (ev.key === "s" || ev.key === "S") { skip(); ev.preventDefault(); }
    else if (ev.key === "u" || ev.key === "U") { undo(); ev.preventDefault(); }
  });
  $("accept").addEventListener("click", accept);
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("rule").addEventListener("change", next);
  $("review-go").addEventListener("click", review);
  $("similar-go").addEventListener("click", similar);
  $("key-form").addEventListener("submit", (ev) => { ev.preventDefault(); key = $("key").value; sessionStorage.setItem("musetag.apiKey", key); $("key-form").hidden = true; start(); });
  $("export").addEventListener("click", async (ev) => {
    ev.preventDefault();
    try {
      const blob = await (await api("/v1/label/export")).blob();
      const a = document.createElement("a"); a.href = URL.createObjectURL(blob); a.download = "manifest.csv"; a.click();
    } catch (e) { status(e.message, true); }
  });

  $("export-package").addEventListener("click", async () => {
    status("writing the package…");
    try { const r = await post("/v1/label/export-package", {}); status(`wrote ${r.path}: run ${r.run}`); }
    catch (e) { status(e.message, true); }
  });

  async function start() {
    try {
      const s = await (await api("/v1/label/state")).json();
      tags = s.tags;
      $("review-tag").innerHTML = "";
      for (const t of tags) { const o = document.createElement("option"); o.value = o.textContent = t; $("review-tag").appendChild(o); }
      renderState(s);
      await next();
    } catch (e) { status(e.message, true); }
  }
  setInterval(() => { api("/v1/label/state").then((r) => r.json()).then(renderState).catch(() => {}); }, 5000);
  start();
})();
