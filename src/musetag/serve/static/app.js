// musetag web page: choose or drop a file, play it, POST it to /v1/tag, draw the tags as bars.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const drop = $("drop"), input = $("file"), audio = $("audio"), statusEl = $("status");
  const bars = $("bars"), results = $("results"), showAll = $("show-all");
  const TOP = 15;
  let objectUrl = null, lastResult = null, decisions = new Set();

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.className = isError ? "error" : "";
  }

  fetch("/v1/tags").then((r) => r.json()).then((info) => {
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
  }).catch(() => { $("model").textContent = "model description unavailable"; });

  function render() {
    if (!lastResult) return;
    const entries = Object.entries(lastResult.scores).sort((a, b) => b[1] - a[1]);
    const shown = showAll.checked ? entries : entries.slice(0, TOP);
    bars.replaceChildren();
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
      value.textContent = (score * 100).toFixed(1) + "%";
      li.append(label, track, value);
      bars.appendChild(li);
      requestAnimationFrame(() => { fill.style.width = Math.max(0.5, score * 100).toFixed(2) + "%"; });
    }
    results.hidden = false;
  }

  async function handle(file) {
    if (!file) return;
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(file);
    audio.src = objectUrl;
    $("filename").textContent = file.name;
    $("player").hidden = false;
    results.hidden = true;
    lastResult = null;
    setStatus(`Tagging ${file.name}…`);
    const form = new FormData();
    form.append("file", file, file.name);
    const started = performance.now();
    try {
      const response = await fetch("/v1/tag?top_k=" + TOP, { method: "POST", body: form });
      let body = null;
      try { body = await response.json(); } catch (e) { body = null; }
      if (!response.ok) {
        const msg = body && body.message ? body.message : `the server answered ${response.status}`;
        setStatus(`Could not tag ${file.name}: ${msg}`, true);
        return;
      }
      lastResult = body;
      decisions = new Set(body.decisions || []);
      const secs = ((performance.now() - started) / 1000).toFixed(1);
      setStatus(`${file.name}: ${body.duration ? body.duration.toFixed(0) + " s of audio, " : ""}tagged in ${secs} s.`);
      document.body.dataset.state = "tagged";
      render();
    } catch (err) {
      setStatus(`Could not reach the server: ${err}`, true);
    }
  }

  input.addEventListener("change", () => handle(input.files[0]));
  showAll.addEventListener("change", render);
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  ["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => { const f = e.dataTransfer.files[0]; if (f) handle(f); });
  // dropping a file anywhere else on the page must not navigate away from it
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
})();
