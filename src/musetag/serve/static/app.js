// musetag web page: choose or drop a file, play it, POST it to /v1/tag?segments=true (one model, or
// every served model side by side), draw its top tags over time as a timeline synchronised with the
// audio player (click or arrow keys seek, a cursor follows playback) and its whole-song tags as bars.
// No external resources: works offline. When the server has an API key (/healthz says auth: true, or a
// request is answered 401) the page asks for it, keeps it in sessionStorage and sends it on every request.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const drop = $("drop"), input = $("file"), audio = $("audio"), statusEl = $("status");
  const results = $("results"), showAll = $("show-all"), holder = $("model-results");
  const pick = $("model-pick"), select = $("model-select");
  const TOP = 15, LINES = 5, W = 1000, H = 100, ALL = "__all__";
  // colour-blind friendly (Okabe & Ito), the same as `musetag plot`
  const COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000"];
  const SVG = "http://www.w3.org/2000/svg";
  let objectUrl = null, lastResults = [], models = [], timelines = [], fileDuration = 0, lastFile = null;

  // -- the API key (musetag serve --api-key) -----------------------------------------------------------
  const KEY_STORE = "musetag.apiKey";
  const keyForm = $("key-form"), keyInput = $("api-key"), keyMessage = $("key-message");

  function storedKey() {
    try { return sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { return ""; }
  }

  function askKey(text) {
    try { sessionStorage.removeItem(KEY_STORE); } catch (e) { /* storage disabled */ }
    keyMessage.textContent = text;
    keyForm.hidden = false;
    keyInput.focus();
  }

  // every request of the page goes through here: the key (when there is one) rides along
  function api(url, options) {
    const opts = Object.assign({}, options || {});
    const key = storedKey();
    if (key) opts.headers = Object.assign({}, opts.headers || {}, { Authorization: "Bearer " + key });
    return fetch(url, opts).then((r) => {
      // a rejected key is asked for again; a request sent without one while the form is open leaves it as it is
      if (r.status === 401 && (key || keyForm.hidden)) {
        askKey(key ? "The server did not accept that key; enter it again." : "This server needs an API key.");
      }
      return r;
    });
  }

  keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = keyInput.value.trim();
    if (!key) return;
    try { sessionStorage.setItem(KEY_STORE, key); } catch (err) { /* storage disabled: asked again next time */ }
    keyInput.value = "";
    keyForm.hidden = true;
    setStatus("");
    start();
    if (lastFile) handle(lastFile);
  });

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.className = isError ? "error" : "";
  }

  function clock(t) {
    t = Math.max(0, t || 0);
    const m = Math.floor(t / 60), s = Math.floor(t % 60);
    return `${m}:${String(s).padStart(2, "0")}`;
  }

  function describe(info) {
    const m = info.model;
    $("model").textContent = `Model ${m.pretrained || m.name} · ${info.tags.length} tags · ${info.task}`;
    const about = $("about");
    about.replaceChildren();
    if (m.licence) {
      const lic = document.createElement("span");
      lic.textContent = `Licence: ${m.licence}`;
      about.append(lic);
    }
    if (m.source) {
      const src = document.createElement(m.source_url ? "a" : "span");
      src.textContent = `Source: ${m.source}`;
      if (m.source_url) { src.href = m.source_url; src.rel = "noopener"; }
      about.append(" · ", src);
    }
    if (m.citation) {
      const cite = document.createElement("span");
      cite.textContent = `Cite: ${m.citation}`;
      about.append(document.createElement("br"), cite);
    }
    about.hidden = !about.childNodes.length;
  }

  function loadDescription(id) {
    const q = id && id !== ALL ? "?model=" + encodeURIComponent(id) : "";
    return api("/v1/tags" + q).then((r) => r.json()).then(describe)
      .catch(() => { $("model").textContent = "model description unavailable"; });
  }

  function start() {
    return api("/v1/models").then((r) => r.json()).then((info) => {
      models = info.models.map((m) => m.id);
      select.replaceChildren();
      for (const m of info.models) {
        const opt = document.createElement("option");
        opt.value = m.id;
        opt.textContent = `${m.id} (${m.n_tags} tags)`;
        select.append(opt);
      }
      if (models.length > 1) {
        const opt = document.createElement("option");
        opt.value = ALL;
        opt.textContent = "all models, side by side";
        select.append(opt);
      }
      pick.hidden = models.length < 2;
      return loadDescription(models[0]);
    }).catch(() => loadDescription(null));
  }

  // a server with a key says so on its open /healthz: ask before the first request fails
  fetch("/healthz").then((r) => r.json()).then((h) => {
    if (h.auth && !storedKey()) askKey("This server needs an API key.");
    else start();
  }).catch(start);

  // -- the timeline --------------------------------------------------------------------------------
  function svgEl(name, attrs) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  function timelineDuration(body) {
    return body.duration || (isFinite(audio.duration) ? audio.duration : 0) || 1;
  }

  function seek(t) {
    if (!fileDuration) return;
    t = Math.min(Math.max(0, t), fileDuration);
    try { audio.currentTime = t; } catch (e) { /* metadata not loaded yet */ }
    moveCursors(t);
  }

  function moveCursors(t) {
    for (const tl of timelines) {
      const x = (Math.min(t, tl.duration) / tl.duration) * W;
      tl.cursor.setAttribute("x1", x.toFixed(2));
      tl.cursor.setAttribute("x2", x.toFixed(2));
      tl.box.dataset.time = t.toFixed(3);
      tl.box.setAttribute("aria-valuenow", t.toFixed(1));
      tl.box.setAttribute("aria-valuetext", `${clock(t)} of ${clock(tl.duration)}`);
    }
  }

  function drawTimeline(section, id, body, first) {
    const tags = body.tags, segs = body.segments || [];
    const duration = timelineDuration(body);
    const regression = body.task === "regression";  // values on their own axis, every target drawn
    const order = regression ? tags.map((t, i) => i).slice(0, LINES)
      : tags.map((t, i) => i).sort((a, b) => body.scores[tags[b]] - body.scores[tags[a]]).slice(0, LINES);
    const box = document.createElement("div");
    box.className = "timeline";
    if (first) box.id = "timeline";
    box.tabIndex = 0;
    box.setAttribute("role", "slider");
    box.setAttribute("aria-label", `Timeline of ${order.map((i) => tags[i]).join(", ")} over the song (${id}); ` +
      "click or use the arrow keys to move the player");
    box.setAttribute("aria-valuemin", "0");
    box.setAttribute("aria-valuemax", duration.toFixed(1));
    box.dataset.windows = String(segs.length);
    // the vertical scale: 0 to the highest score drawn (rounded up to 10 %), so low moods stay readable;
    // for regression values, their lowest to highest value
    let top = regression ? -Infinity : 0, low = regression ? Infinity : 0;
    for (const s of segs) for (const ti of order) { top = Math.max(top, s.scores[ti]); low = Math.min(low, s.scores[ti]); }
    const ymin = regression ? low : 0;
    const ymax = regression ? Math.max(top, low + 1e-6) : Math.min(1, Math.max(0.1, Math.ceil(top * 10 - 1e-9) / 10));
    const yOf = (v) => (H * (1 - (v - ymin) / (ymax - ymin))).toFixed(2);
    box.dataset.ymax = String(ymax);
    box.dataset.ymin = String(ymin);
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", "aria-hidden": "true", focusable: "false" });
    for (const y of [0.25, 0.5, 0.75]) svg.append(svgEl("line", { class: "grid", x1: 0, x2: W, y1: H * (1 - y), y2: H * (1 - y) }));
    const legend = document.createElement("ul");
    legend.className = "legend";
    order.forEach((ti, k) => {
      const colour = COLOURS[k % COLOURS.length];
      let pts;
      if (segs.length === 1) {
        const y = yOf(segs[0].scores[ti]);
        pts = `${(segs[0].start / duration) * W},${y} ${(segs[0].end / duration) * W},${y}`;
      } else {
        pts = segs.map((s) => `${(((s.start + s.end) / 2) / duration * W).toFixed(2)},${yOf(s.scores[ti])}`).join(" ");
      }
      const line = svgEl("polyline", { class: "series", points: pts, stroke: colour });
      line.dataset.tag = tags[ti];
      svg.append(line);
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = colour;
      li.append(sw, document.createTextNode(tags[ti]));
      legend.append(li);
    });
    const scale = document.createElement("li");
    scale.className = "muted";
    scale.textContent = regression ? `(values ${ymin.toFixed(2)} to ${ymax.toFixed(2)}, a point per window)`
      : `(scale 0–${Math.round(ymax * 100)} %, a point per window)`;
    legend.append(scale);
    const cursor = svgEl("line", { class: "cursor", x1: 0, x2: 0, y1: 0, y2: H });
    svg.append(cursor);
    box.append(svg);
    const axis = document.createElement("div");
    axis.className = "axis";
    axis.setAttribute("aria-hidden", "true");
    for (let k = 0; k <= 4; k++) {
      const span = document.createElement("span");
      span.textContent = clock((duration * k) / 4);
      axis.append(span);
    }
    box.addEventListener("click", (e) => {
      const rect = box.getBoundingClientRect();
      seek(((e.clientX - rect.left) / rect.width) * duration);
    });
    box.addEventListener("keydown", (e) => {
      const now = audio.currentTime || 0, big = e.shiftKey ? 30 : 5;
      const moves = { ArrowLeft: now - big, ArrowDown: now - big, ArrowRight: now + big, ArrowUp: now + big,
        PageDown: now - 30, PageUp: now + 30, Home: 0, End: duration };
      if (e.key in moves) { e.preventDefault(); seek(moves[e.key]); }
    });
    // the same data as a table, for screen readers and for reading exact numbers
    const details = document.createElement("details");
    details.className = "windows";
    const summary = document.createElement("summary");
    summary.textContent = `Scores over time as a table (${segs.length} windows)`;
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    for (const text of ["from", "to", regression ? "values" : "top tags"]) {
      const th = document.createElement("th");
      th.textContent = text;
      head.append(th);
    }
    const tbody = table.createTBody();
    for (const s of segs) {
      const row = tbody.insertRow();
      const best = tags.map((t, i) => i).sort((a, b) => s.scores[b] - s.scores[a]).slice(0, 3);
      row.insertCell().textContent = clock(s.start);
      row.insertCell().textContent = clock(s.end);
      row.insertCell().textContent = regression ? order.map((i) => `${tags[i]} ${s.scores[i].toFixed(3)}`).join(", ")
        : best.map((i) => `${tags[i]} ${(s.scores[i] * 100).toFixed(0)}%`).join(", ");
    }
    details.append(summary, table);
    section.append(legend, box, axis, details);
    timelines.push({ box, cursor, duration });
  }

  // -- the bars --------------------------------------------------------------------------------------
  function drawBars(section, body, first) {
    const decisions = new Set(body.decisions || []);
    const regression = body.task === "regression";  // predicted values, in the targets' order
    const entries = regression ? Object.entries(body.scores) : Object.entries(body.scores).sort((a, b) => b[1] - a[1]);
    const shown = showAll.checked || regression ? entries : entries.slice(0, TOP);
    // a value's bar: its place between the lowest and highest value shown (0 included)
    const lo = Math.min(0, ...entries.map((e) => e[1])), hi = Math.max(lo + 1e-6, ...entries.map((e) => e[1]));
    const width = (v) => (regression ? (100 * (v - lo)) / (hi - lo) : v * 100);
    const bars = document.createElement("ol");
    bars.className = "bars";
    if (first) bars.id = "bars";
    for (const [tag, score] of shown) {
      const li = document.createElement("li");
      li.className = "bar" + (decisions.has(tag) ? " on" : "");
      li.dataset.tag = tag;
      li.dataset.score = String(score);
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = tag;
      label.title = tag;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.display = "block";
      fill.style.width = "0%";
      track.appendChild(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = regression ? score.toFixed(3) : (score * 100).toFixed(1) + "%";
      li.append(label, track, value);
      bars.appendChild(li);
      requestAnimationFrame(() => { fill.style.width = Math.max(0.5, width(score)).toFixed(2) + "%"; });
    }
    section.append(bars);
  }

  function render() {
    if (!lastResults.length) return;
    holder.replaceChildren();
    holder.className = lastResults.length > 1 ? "side" : "";
    timelines = [];
    lastResults.forEach(({ id, body }, k) => {
      const section = document.createElement("section");
      section.className = "model-result";
      section.dataset.model = id;
      const h = document.createElement("h3");
      h.textContent = id;
      section.append(h);
      if (body.segments) drawTimeline(section, id, body, k === 0);
      drawBars(section, body, k === 0);
      holder.append(section);
    });
    moveCursors(audio.currentTime || 0);
    results.hidden = false;
  }

  // the cursor follows playback (every frame while playing, and on every seek)
  let frame = null;
  function follow() {
    moveCursors(audio.currentTime || 0);
    frame = audio.paused ? null : requestAnimationFrame(follow);
  }
  audio.addEventListener("play", () => { if (frame === null) frame = requestAnimationFrame(follow); });
  for (const ev of ["timeupdate", "seeked", "pause"]) audio.addEventListener(ev, () => moveCursors(audio.currentTime || 0));

  async function tagWith(id, file) {
    const form = new FormData();
    form.append("file", file, file.name);
    const q = `?segments=true&top_k=${TOP}` + (id ? "&model=" + encodeURIComponent(id) : "");
    const response = await api("/v1/tag" + q, { method: "POST", body: form });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      if (response.status === 401) throw new Error("this server needs an API key: enter it above and the file is tagged");
      const msg = body && body.message ? body.message : `the server answered ${response.status}`;
      throw new Error(msg);
    }
    return body;
  }

  async function handle(file) {
    if (!file) return;
    if (file !== lastFile) {  // the same file again (another model chosen): keep the player where it is
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      objectUrl = URL.createObjectURL(file);
      audio.src = objectUrl;
    }
    lastFile = file;
    $("filename").textContent = file.name;
    $("player").hidden = false;
    results.hidden = true;
    lastResults = [];
    delete document.body.dataset.state;
    const chosen = select.value === ALL ? models : [select.value || models[0] || null];
    setStatus(`Tagging ${file.name}…`);
    const started = performance.now();
    try {
      const got = [];
      for (const id of chosen) got.push({ id: id || "model", body: await tagWith(id, file) });
      lastResults = got;
      fileDuration = got[0].body.duration || 0;
      const secs = ((performance.now() - started) / 1000).toFixed(1);
      const dur = got[0].body.duration ? got[0].body.duration.toFixed(0) + " s of audio, " : "";
      setStatus(`${file.name}: ${dur}tagged in ${secs} s${got.length > 1 ? ` by ${got.length} models` : ""}.`);
      document.body.dataset.state = "tagged";
      render();
    } catch (err) {
      const text = err instanceof TypeError ? `Could not reach the server: ${err.message}` : `Could not tag ${file.name}: ${err.message}`;
      setStatus(text, true);
    }
  }

  // reset the input after each pick, so that choosing the same file again tags it again
  input.addEventListener("change", () => { const f = input.files[0]; input.value = ""; handle(f); });
  showAll.addEventListener("change", render);
  // another model (or all of them): describe it and tag the current song with it
  select.addEventListener("change", () => {
    loadDescription(select.value === ALL ? models[0] : select.value);
    if (lastFile) handle(lastFile);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  ["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => { const f = e.dataTransfer.files[0]; if (f) handle(f); });
  // dropping a file anywhere else on the page must not navigate away from it
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
})();
