// The timeline of a track's per-window scores, synchronised with an <audio> player (click or arrow keys seek,
// a cursor follows playback), with the same numbers as a table for screen readers. Shared by the main page
// (app.js: POST /v1/tag?segments=true) and the labelling page (label.js: GET /v1/label/timeline): both give
// a body { tags, scores: {tag: score}, segments: [{start, end, scores: [per tag]}], duration, task }
// (task "regression": the scores are values, drawn on their own axis).
// No external resources: works offline.
window.MusetagTimeline = (function () {
  "use strict";
  const LINES = 5, W = 1000, H = 100;
  // colour-blind friendly (Okabe & Ito), the same as `musetag plot`
  const COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000"];
  const SVG = "http://www.w3.org/2000/svg";

  function clock(t) {
    t = Math.max(0, t || 0);
    const m = Math.floor(t / 60), s = Math.floor(t % 60);
    return `${m}:${String(s).padStart(2, "0")}`;
  }

  // an axis label: m:ss, or seconds with decimals for a short file (whose quarter marks m:ss would repeat)
  function axisLabel(t, duration) {
    if (duration >= 20) return clock(t);
    return `${t.toFixed(duration < 2 ? 2 : 1)} s`;
  }

  function svgEl(name, attrs) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  // the timelines that follow one player; fileDuration() says how long the current file is (0: unknown)
  function create(audio, fileDuration) {
    let timelines = [];

    function timelineDuration(body) {
      return body.duration || (isFinite(audio.duration) ? audio.duration : 0) || 1;
    }

    function seek(t) {
      const total = fileDuration();
      if (!total) return;
      t = Math.min(Math.max(0, t), total);
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

    function draw(section, id, body, first) {
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
      // regression: a margin of 5 % of the range above and below, as `musetag plot` draws them, so the highest and
      // lowest windows are not cut by the box's edge
      const pad = regression ? Math.max(0.05 * (top - low), 1e-3) : 0;
      const ymin = regression ? low - pad : 0;
      const ymax = regression ? top + pad : Math.min(1, Math.max(0.1, Math.ceil(top * 10 - 1e-9) / 10));
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
      scale.textContent = regression ? `(values ${low.toFixed(2)} to ${top.toFixed(2)}, a point per window)`
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
        span.textContent = axisLabel((duration * k) / 4, duration);
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
      summary.textContent = `Scores over time as a table (${segs.length} window${segs.length === 1 ? "" : "s"})`;
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

    // the cursor follows playback (every frame while playing, and on every seek)
    let frame = null;
    function follow() {
      moveCursors(audio.currentTime || 0);
      frame = audio.paused ? null : requestAnimationFrame(follow);
    }
    audio.addEventListener("play", () => { if (frame === null) frame = requestAnimationFrame(follow); });
    for (const ev of ["timeupdate", "seeked", "pause"]) audio.addEventListener(ev, () => moveCursors(audio.currentTime || 0));

    return { draw, moveCursors, seek, clear: () => { timelines = []; } };
  }

  return { create, clock, COLOURS };
})();
