// The labelling page (musetag label): one track at a time, tags by click or keys 1-9, Enter saves,
// S skips, U undoes; a regression project (--task regression) shows a slider per target instead (keys 1-9
// focus one, the arrow keys move it, Enter saves). Under the player, the timeline of the current head's
// scores window by window (timeline.js, shared with the main page). With an API key (401) the page asks
// for it, keeps it in sessionStorage and sends it on every request; the audio is fetched with the key too
// (a blob URL), never from an open route.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const annotator = sessionStorage.getItem("musetag-annotator") || ("tab-" + Math.random().toString(36).slice(2, 8));
  sessionStorage.setItem("musetag-annotator", annotator);
  let key = sessionStorage.getItem("musetag.apiKey") || "";
  let tags = [], selected = new Set(), current = null, skipped = [], audioUrl = null, task = "multilabel";
  let values = {}, range = [0, 1], trackDuration = 0, timelineFor = null;
  // one save at a time (Enter pressed fast saved the same label four times); a save refused for want of the
  // API key is kept and sent once the key is given
  let saving = false, unsaved = null;
  const timeline = MusetagTimeline.create($("audio"), () => trackDuration);

  async function api(path, opts = {}) {
    opts = Object.assign({}, opts);
    opts.headers = Object.assign({ "Content-Type": "application/json" }, opts.headers || {});
    if (key) opts.headers.Authorization = "Bearer " + key;
    let r;
    try { r = await fetch(path, opts); }
    catch (e) {  // the browser's own words ("Failed to fetch") say nothing; the progress line is no longer live
      $("progress").textContent = "(the server does not answer)";
      throw new Error("could not reach the server: is `musetag label` still running?");
    }
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

  function renderSliders() {
    $("tag-buttons").innerHTML = "";
    $("tag-buttons").setAttribute("aria-label", "Targets (keys 1-9 focus a slider, arrow keys move it, Enter saves, S skips, U undoes)");
    tags.forEach((t, i) => {
      const row = document.createElement("div");
      row.className = "slider";
      const id = "slider-" + i;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = (i < 9 ? `${i + 1} ` : "") + t;
      const input = document.createElement("input");
      Object.assign(input, { type: "range", id, min: String(range[0]), max: String(range[1]), step: "0.01" });
      input.value = String(values[t]);
      input.dataset.target = t;
      input.setAttribute("aria-label", `${t}, from ${range[0]} to ${range[1]}${i < 9 ? " (key " + (i + 1) + ")" : ""}`);
      const out = document.createElement("output");
      out.htmlFor = id;
      out.textContent = Number(values[t]).toFixed(2);
      input.addEventListener("input", () => { values[t] = Number(input.value); out.textContent = values[t].toFixed(2); });
      row.append(label, input, out);
      $("tag-buttons").appendChild(row);
    });
  }

  function renderButtons() {
    if (task === "regression") { renderSliders(); return; }
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
  function toggle(t) {
    if (task === "multiclass") selected = new Set(selected.has(t) ? [] : [t]);  // one class: the buttons are radios
    else if (selected.has(t)) selected.delete(t); else selected.add(t);
    renderButtons();
  }

  function renderPredictions(preds) {
    $("predictions").innerHTML = "";
    for (const p of preds) {
      const li = document.createElement("li");
      const share = Math.min(1, Math.max(0, (p.score - range[0]) / (range[1] - range[0])));
      li.className = "bar" + (task !== "regression" && p.score >= 0.5 ? " on" : "");
      li.setAttribute("aria-label", task === "regression" ? `${p.tag}: predicted ${p.score.toFixed(2)}`
        : `${p.tag}: predicted ${(p.score * 100).toFixed(0)} percent`);
      li.innerHTML = `<span class="label"></span><span class="track"><span class="fill" style="width:${(share * 100).toFixed(1)}%"></span></span><span class="value">${p.score.toFixed(2)}</span>`;
      li.querySelector(".label").textContent = p.tag;
      $("predictions").appendChild(li);
    }
  }

  // the sliders start at the track's label, else at the head's prediction, else mid-range
  function startValues(track) {
    const predicted = {};
    for (const p of track.predictions || []) predicted[p.tag] = p.score;
    values = {};
    for (const t of tags) {
      const v = track.values ? track.values[t] : (t in predicted ? predicted[t] : (range[0] + range[1]) / 2);
      values[t] = Math.min(range[1], Math.max(range[0], Math.round(v * 100) / 100));
    }
  }

  async function drawTimeline(path) {
    timelineFor = path;
    $("timeline-status").textContent = "computing the timeline…";
    try {
      const body = await (await api("/v1/label/timeline?path=" + encodeURIComponent(path))).json();
      if (timelineFor !== path) return;  // another track was shown meanwhile
      trackDuration = body.duration || 0;
      $("timeline-holder").replaceChildren();
      timeline.clear();
      timeline.draw($("timeline-holder"), "current model", body, true);
      timeline.moveCursors($("audio").currentTime || 0);
      const n = body.segments.length;
      $("timeline-status").textContent = `${n} window${n === 1 ? "" : "s"}, scored by the current model`;
    } catch (e) { if (timelineFor === path) $("timeline-status").textContent = "no timeline: " + e.message; }
  }

  async function show(track) {
    current = track.path;
    selected = new Set(task === "regression" ? [] : track.label || []);
    if (task === "regression") startValues(track);
    renderButtons();
    renderPredictions(track.predictions || []);
    if (!current) {
      if (skipped.length) {  // only skipped tracks are left: offer them again rather than say there is nothing
        status(`every other track is labelled: the ${skipped.length} skipped ones come round again`);
        skipped = [];
        await next();
        return;
      }
      $("filename").textContent = "No track to label yet (embedding, or everything is labelled).";
      setTimeout(next, 3000);
      return;
    }
    $("filename").textContent = current + (track.label ? ` (labelled: ${track.label.join(", ") || "none"})` : "");
    $("timeline-holder").replaceChildren();
    timeline.clear();
    drawTimeline(current);
    try {
      const shown = current;
      const blob = await (await api("/v1/label/audio?path=" + encodeURIComponent(shown))).blob();
      if (current !== shown) return;  // another track was shown meanwhile: its audio plays, not this one
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

  async function save(body) {
    const r = await post("/v1/label/label", body);
    const what = task === "regression" ? r.saved.label.join(", ") : r.saved.tags.join(", ") || "none of the tags";
    status(`saved ${r.saved.path}: ${what} (model refit in ${r.refit_ms} ms)`);  // the track the server saved
    renderState(r.state);
  }

  async function accept() {
    if (!current || saving) return;
    saving = true;
    const body = task === "regression" ? { path: current, values, annotator }
      : { path: current, tags: tags.filter((t) => selected.has(t)), annotator };
    try {
      await save(body);
      await next();
    } catch (e) {
      if (!$("key-form").hidden) {  // refused for the key: kept, and saved once the key is entered
        unsaved = body;
        status(`not saved yet: ${body.path} is saved once the API key is entered above`, true);
      } else status(`not saved: ${e.message}`, true);
    } finally { saving = false; }
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
        for (const [text, on] of task === "regression" ? [] : [["is " + tag, true], ["is not " + tag, false]]) {
          const b = document.createElement("button");
          b.type = "button"; b.textContent = text; b.setAttribute("aria-label", `${t.path} ${text}`);
          b.addEventListener("click", async () => {
            const now = new Set(t.label || []);
            // multiclass: one class per track, so "is X" replaces the track's class (adding it to another was refused)
            if (on && task === "multiclass") now.clear();
            if (on) now.add(tag); else now.delete(tag);
            try {
              const res = await post("/v1/label/label", { path: t.path, tags: tags.filter((x) => now.has(x)), annotator });
              status(`saved ${res.saved.path}: ${res.saved.tags.join(", ") || "none of the tags"}`);
              renderState(res.state); review();
            } catch (e) { status(`not saved: ${e.message}`, true); }
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
    const slider = ev.target && ev.target.type === "range";  // a focused slider keeps its arrow keys
    if (ev.target && ["INPUT", "SELECT", "TEXTAREA"].includes(ev.target.tagName) && !slider) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (/^[1-9]$/.test(ev.key) && tags[Number(ev.key) - 1] !== undefined) {
      if (task === "regression") $("slider-" + (Number(ev.key) - 1)).focus(); else toggle(tags[Number(ev.key) - 1]);
      ev.preventDefault();
    }
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
  $("key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    key = $("key").value;
    sessionStorage.setItem("musetag.apiKey", key);
    $("key-form").hidden = true;
    status("");
    if (unsaved) {  // the label refused for want of the key
      const body = unsaved;
      unsaved = null;
      try { await save(body); } catch (e) { unsaved = $("key-form").hidden ? null : body; status(`not saved: ${e.message}`, true); return; }
    }
    start();
  });
  $("export").addEventListener("click", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("/v1/label/export");
      const blob = await r.blob();
      const a = document.createElement("a"); a.href = URL.createObjectURL(blob); a.download = "manifest.csv"; a.click();
      // the splits, and what is wrong with them (an empty validation or test split), said on the page
      const note = r.headers.get("X-Musetag-Note");
      status(`exported manifest.csv (${r.headers.get("X-Musetag-Splits") || "?"})` + (note ? `: ${note}` : ""), Boolean(note));
    } catch (e) { status(e.message, true); }
  });

  $("export-package").addEventListener("click", async () => {
    status("writing the package…");
    try { const r = await post("/v1/label/export-package", {}); status(`wrote ${r.path} (${r.note}): run ${r.run}`); }
    catch (e) { status(e.message, true); }
  });

  async function start() {
    try {
      const s = await (await api("/v1/label/state")).json();
      tags = s.tags;
      task = s.task;
      if (s.value_range) range = s.value_range;
      $("rule").value = s.default_rule;
      $("review-tag").innerHTML = "";
      for (const t of tags) { const o = document.createElement("option"); o.value = o.textContent = t; $("review-tag").appendChild(o); }
      renderState(s);
      await next();
    } catch (e) { status(e.message, true); }
  }
  setInterval(() => { api("/v1/label/state").then((r) => r.json()).then(renderState).catch(() => {}); }, 5000);
  start();
})();
