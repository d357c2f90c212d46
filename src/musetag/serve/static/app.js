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
  const TOP = 15, ALL = "__all__";
  let objectUrl = null, lastResults = [], models = [], fileDuration = 0, lastFile = null;
  // the file being tagged now: an answer for an earlier file (chosen again before it came) is dropped, and its
  // request aborted, so one file's tags never show under another's name
  let current = null;
  // the timelines (timeline.js, shared with the labelling page) follow this page's player
  const timeline = MusetagTimeline.create(audio, () => fileDuration);

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
    // the models first: a file tagged before the list is known would go to no model in particular
    start().then(() => { if (lastFile) handle(lastFile); });
  });

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.className = isError ? "error" : "";
  }

  // one model's licence, source and citation, as nodes for the "about" line (prefixed by its id when several)
  function aboutNodes(m, prefix) {
    const parts = [];
    if (m.licence) {
      const lic = document.createElement("span");
      lic.textContent = `Licence: ${m.licence}`;
      parts.push(lic);
    }
    if (m.source) {
      const src = document.createElement(m.source_url ? "a" : "span");
      src.textContent = `Source: ${m.source}`;
      if (m.source_url) { src.href = m.source_url; src.rel = "noopener"; }
      parts.push(src);
    }
    const nodes = [];
    parts.forEach((p, i) => { if (i) nodes.push(" · "); nodes.push(p); });
    if (prefix && nodes.length) nodes.unshift(`${prefix}: `);
    if (m.citation) {
      const cite = document.createElement("span");
      cite.textContent = `${prefix && !nodes.length ? prefix + ": " : ""}Cite: ${m.citation}`;
      if (nodes.length) nodes.push(document.createElement("br"));
      nodes.push(cite);
    }
    return nodes;
  }

  // infos: [{id, info}] of the models shown (several when side by side: each one's licence is its own)
  // how many outputs in the task's words, as ModelPackage.outputs_phrase says them: a regression model's are targets
  // (values), a multiclass model's classes
  function outputs(n, task) {
    const word = task === "regression" ? "target" : task === "multiclass" ? "class" : "tag";
    return `${n} ${word}${n === 1 ? "" : word === "class" ? "es" : "s"}`;
  }

  function describe(infos) {
    const about = $("about");
    about.replaceChildren();
    const count = (info) => outputs(info.tags.length, info.task);
    if (infos.length === 1) {
      const info = infos[0].info, m = info.model, name = m.pretrained || m.name;
      // the served id first (two packages of one architecture, e.g. two probes, read alike by name alone)
      const shown = info.id && info.id !== name ? `${info.id} (${name})` : name;
      $("model").textContent = `Model ${shown} · ${count(info)} · ${info.task}`;
      about.append(...aboutNodes(m, ""));
    } else {
      $("model").textContent = `${infos.length} models side by side: `
        + infos.map(({ id, info }) => `${id} (${count(info)})`).join(", ");
      infos.forEach(({ id, info }) => {
        const nodes = aboutNodes(info.model, id);
        if (!nodes.length) return;
        if (about.childNodes.length) about.append(document.createElement("br"));
        about.append(...nodes);
      });
    }
    about.hidden = !about.childNodes.length;
  }

  // id: a model, ALL (every served model), or null (the server's default)
  let described = 0;  // the latest description asked for: an earlier answer arriving later is dropped
  function loadDescription(id) {
    const ids = id === ALL ? models : [id];
    const mine = ++described;
    return Promise.all(ids.map((one) => {
      const q = one ? "?model=" + encodeURIComponent(one) : "";
      return api("/v1/tags" + q).then((r) => r.json()).then((info) => ({ id: one, info }));
    })).then((infos) => { if (mine === described) describe(infos); })
      .catch(() => { if (mine === described) $("model").textContent = "model description unavailable"; });
  }

  function start() {
    return api("/v1/models").then((r) => r.json()).then((info) => {
      models = info.models.map((m) => m.id);
      select.replaceChildren();
      for (const m of info.models) {
        const opt = document.createElement("option");
        opt.value = m.id;
        opt.textContent = `${m.id} (${outputs(m.n_tags, m.task)})`;
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

  // what the timeline and the bars show: probabilities and decisions (the page's own words, with their highlight),
  // or a regression model's values
  const TAGS_EXPLAIN = $("explain").innerHTML;
  function explain() {
    const regression = lastResults.map(({ body }) => body.task === "regression");
    const what = regression.every(Boolean) ? "values" : regression.some(Boolean) ? "mixed" : "tags";
    $("results-title").textContent = what === "values" ? "Values" : "Tags";
    if (what === "tags") { $("explain").innerHTML = TAGS_EXPLAIN; return; }
    $("explain").textContent = what === "values"
      ? "The timeline shows the predicted values window by window on their own scale (click it, or focus it and use "
        + "the arrow keys, to move the player there); bars show the whole-song values, each placed between the "
        + "lowest value shown (or 0) and the highest."
      : "The timelines show each model's top tags (probabilities) or predicted values window by window (click one, "
        + "or focus it and use the arrow keys, to move the player there); bars show whole-song probabilities "
        + "(highlighted: above the model's decision threshold) or a regression model's values.";
  }

  function render() {
    if (!lastResults.length) return;
    explain();
    holder.replaceChildren();
    holder.className = lastResults.length > 1 ? "side" : "";
    timeline.clear();
    lastResults.forEach(({ id, body }, k) => {
      const section = document.createElement("section");
      section.className = "model-result";
      section.dataset.model = id;
      const h = document.createElement("h3");
      h.textContent = id;
      section.append(h);
      if (body.segments) timeline.draw(section, id, body, k === 0);
      drawBars(section, body, k === 0);
      holder.append(section);
    });
    timeline.moveCursors(audio.currentTime || 0);
    results.hidden = false;
  }


  async function tagWith(id, file, signal) {
    const form = new FormData();
    form.append("file", file, file.name);
    const q = `?segments=true&top_k=${TOP}` + (id ? "&model=" + encodeURIComponent(id) : "");
    const sentKey = Boolean(storedKey());
    const response = await api("/v1/tag" + q, { method: "POST", body: form, signal });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      if (response.status === 401) {
        throw new Error(sentKey ? "the server did not accept the API key: enter it again above and the file is tagged"
          : "this server needs an API key: enter it above and the file is tagged");
      }
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
    if (current) current.abort();  // the server stops working on a request whose client has gone
    const mine = new AbortController();
    current = mine;
    const started = performance.now();
    try {
      const got = [];
      for (const id of chosen) got.push({ id: id || "model", body: await tagWith(id, file, mine.signal) });
      if (current !== mine) return;  // another file (or model) was chosen meanwhile: its answer is shown
      lastResults = got;
      fileDuration = got[0].body.duration || 0;
      const secs = ((performance.now() - started) / 1000).toFixed(1);
      const dur = got[0].body.duration ? got[0].body.duration.toFixed(0) + " s of audio, " : "";
      // the flags that say the scores should not be read as a judgement of music (too short, silent, damaged)
      const warnings = [...new Set(got.flatMap((g) => g.body.warnings || []))];
      setStatus(`${file.name}: ${dur}tagged in ${secs} s${got.length > 1 ? ` by ${got.length} models` : ""}.`
        + (warnings.length ? ` Warning: ${warnings.join("; ")}` : ""), warnings.length > 0);
      document.body.dataset.state = "tagged";
      render();
    } catch (err) {
      if (current !== mine) return;  // aborted for a newer file: not an error to show
      const text = err instanceof TypeError ? `Could not reach the server: ${err.message}` : `Could not tag ${file.name}: ${err.message}`;
      setStatus(text, true);
    }
  }

  // reset the input after each pick, so that choosing the same file again tags it again
  input.addEventListener("change", () => { const f = input.files[0]; input.value = ""; handle(f); });
  showAll.addEventListener("change", render);
  // another model (or all of them): describe it and tag the current song with it
  select.addEventListener("change", () => {
    loadDescription(select.value);
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
