// The timeline page: a Gantt of task attempts per worker on a canvas, fed by /timeline/bars.
//
// The server answers the visible window at the plot's pixel width: bars when few, else one cell per
// row and pixel (see historyserver/gantt.py). Everything is kept in milliseconds, so while a new
// answer is on its way a pan or zoom redraws what is loaded at the new scale. The window, colour and
// first row shown live in the URL (replaceState), so a view can be pasted.
(function () {
  "use strict";

  const AXIS_H = 26, ROW_H = 18, NODE_H = 20, GUTTER = 190, BAR_PAD = 3;
  const FUNCTION_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7",
                           "#9c755f", "#e15759", "#86bcb6", "#8cd17d", "#d4a6c8"];
  const STATE_VARS = { FINISHED: "--ok", FAILED: "--bad", RUNNING: "--live", RUNNING_IN_RAY_GET: "--live",
                       RUNNING_IN_RAY_WAIT: "--live" };
  const MIN_SPAN_MS = 2;

  document.addEventListener("DOMContentLoaded", () => {
    const dataNode = document.getElementById("timeline-data");
    const canvas = document.getElementById("gantt");
    if (!dataNode || !canvas) return; // the empty page: nothing to draw
    const summary = JSON.parse(dataNode.textContent);
    const box = document.getElementById("gantt-box");
    const tip = document.getElementById("gantt-tip");
    const status = document.getElementById("gantt-status");
    const windowText = document.getElementById("gantt-window");
    const legend = document.getElementById("gantt-legend");
    const selectedText = document.getElementById("gantt-selected");
    const sessionPath = canvas.dataset.sessionPath;
    const ctx = canvas.getContext("2d");

    // Rows: each node a header line, then a line per worker. y is the top of a line in content pixels.
    const rows = summary.rows.map(([id, node, worker, attempts], position) => ({ id, node, worker, attempts, position }));
    const rowById = new Map(rows.map((row) => [row.id, row]));
    const lines = [];
    let contentHeight = 0, lastNode = -1;
    for (const row of rows) {
      if (row.node !== lastNode) {
        lines.push({ kind: "node", node: summary.nodes[row.node], y: contentHeight });
        contentHeight += NODE_H;
        lastNode = row.node;
      }
      row.y = contentHeight;
      lines.push({ kind: "row", row, y: contentHeight });
      contentHeight += ROW_H;
    }

    const params = new URLSearchParams(location.search);
    const fullStart = summary.start_ms, fullEnd = Math.max(summary.end_ms, summary.start_ms + MIN_SPAN_MS);
    const pad = (fullEnd - fullStart) * 0.01;
    const home = { start: fullStart - pad, end: fullEnd + pad };
    const state = {
      start: numberParam("start_ms", home.start),
      end: numberParam("end_ms", home.end),
      colorBy: params.get("color_by") === "function" ? "function" : "state",
      scrollY: 0,
      loaded: null, // the last answer, in ms: {mode, items}
      selected: null,
      hover: null,
    };
    if (!(state.end > state.start)) Object.assign(state, home);
    const firstRow = Math.max(0, Math.min(rows.length - 1, Number(params.get("row")) || 0));
    state.scrollY = firstRow > 0 ? rows[firstRow].y : 0; // row 0: its node's header too

    function numberParam(name, fallback) {
      const value = Number(params.get(name));
      return params.get(name) !== null && Number.isFinite(value) ? value : fallback;
    }

    // --- geometry -------------------------------------------------------------------------------
    let width = 0, height = 0;
    const plotWidth = () => Math.max(1, width - GUTTER);
    const viewHeight = () => height - AXIS_H;
    const xOf = (ms) => GUTTER + ((ms - state.start) / (state.end - state.start)) * plotWidth();
    const msOf = (x) => state.start + ((x - GUTTER) / plotWidth()) * (state.end - state.start);
    const maxScroll = () => Math.max(0, contentHeight - viewHeight());

    function resize() {
      const ratio = window.devicePixelRatio || 1;
      width = box.clientWidth;
      const room = Math.max(260, window.innerHeight * 0.68);
      height = Math.round(Math.min(contentHeight + AXIS_H + 2, room));
      canvas.style.height = height + "px";
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      state.scrollY = Math.min(state.scrollY, maxScroll());
    }

    function visibleRows() {
      const top = state.scrollY, bottom = state.scrollY + viewHeight();
      let first = 0, last = rows.length - 1;
      while (first < rows.length && rows[first].y + ROW_H < top) first++;
      while (last > first && rows[last].y > bottom) last--;
      return [first, last];
    }

    // --- colours --------------------------------------------------------------------------------
    let palette = {};
    function readPalette() {
      const css = getComputedStyle(document.documentElement);
      const v = (name) => css.getPropertyValue(name).trim();
      palette = { bg: v("--bg"), fg: v("--fg"), muted: v("--muted"), line: v("--line"), soft: v("--soft"),
                  bad: v("--bad"), warn: v("--warn"), focus: v("--focus") };
      palette.keys = {
        state: Object.fromEntries(summary.states.map((entry) => [entry.key, v(STATE_VARS[entry.name] || "--warn")])),
        function: Object.fromEntries(summary.functions.map((entry, rank) =>
          [entry.key, rank < FUNCTION_COLORS.length ? FUNCTION_COLORS[rank] : palette.muted])),
      };
    }
    const colorOf = (key) => palette.keys[state.colorBy][key] || palette.muted;
    // Dark text on a light fill (the dark theme's state colours), white on a dark one.
    function textOn(color) {
      const hex = /^#([0-9a-f]{6})$/i.exec(color);
      if (!hex) return "#fff";
      const n = parseInt(hex[1], 16);
      const luminance = 0.299 * (n >> 16) + 0.587 * ((n >> 8) & 255) + 0.114 * (n & 255);
      return luminance > 150 ? "#111" : "#fff";
    }
    const names = {
      state: Object.fromEntries(summary.states.map((entry) => [entry.key, entry.name])),
      function: Object.fromEntries(summary.functions.map((entry) => [entry.key, entry.name])),
    };

    function drawLegend() {
      const entries = state.colorBy === "state" ? summary.states : summary.functions;
      legend.replaceChildren();
      entries.slice(0, FUNCTION_COLORS.length).forEach((entry) => {
        const item = document.createElement("li");
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = colorOf(entry.key);
        item.append(swatch, `${entry.name ?? "—"} (${entry.attempts.toLocaleString("en")})`);
        legend.append(item);
      });
      const rest = entries.slice(FUNCTION_COLORS.length);
      if (rest.length) {
        const item = document.createElement("li");
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = palette.muted;
        const count = rest.reduce((sum, entry) => sum + entry.attempts, 0);
        item.append(swatch, `${rest.length} other functions (${count.toLocaleString("en")})`);
        legend.append(item);
      }
    }

    // --- time axis ------------------------------------------------------------------------------
    const STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5,
                   36e5, 72e5, 108e5, 216e5, 432e5, 864e5];
    const pad2 = (n, size = 2) => String(n).padStart(size, "0");
    function clock(ms, step) {
      const date = new Date(ms);
      let text = `${pad2(date.getUTCHours())}:${pad2(date.getUTCMinutes())}`;
      if (step < 6e4) text += `:${pad2(date.getUTCSeconds())}`;
      if (step < 1e3) text += `.${pad2(date.getUTCMilliseconds(), 3)}`;
      return text;
    }
    function fullTime(ms) {
      const date = new Date(ms);
      return `${date.toISOString().slice(0, 10)} ${clock(ms, 1)}`;
    }
    function duration(ms) {
      if (ms < 1000) return `${Math.round(ms)} ms`;
      if (ms < 60e3) return `${(ms / 1000).toFixed(1)} s`;
      const minutes = Math.floor(ms / 60e3), seconds = Math.floor((ms % 60e3) / 1000);
      if (minutes < 60) return `${minutes} min ${pad2(seconds)} s`;
      return `${Math.floor(minutes / 60)} h ${pad2(minutes % 60)} min`;
    }

    function drawAxis() {
      const span = state.end - state.start;
      const step = STEPS.find((candidate) => (candidate / span) * plotWidth() >= 90) || STEPS[STEPS.length - 1];
      ctx.fillStyle = palette.soft;
      ctx.fillRect(0, 0, width, AXIS_H);
      ctx.strokeStyle = palette.line;
      ctx.beginPath();
      ctx.moveTo(0, AXIS_H - 0.5);
      ctx.lineTo(width, AXIS_H - 0.5);
      ctx.stroke();
      ctx.font = "11.5px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      ctx.fillStyle = palette.muted;
      ctx.fillText("UTC", 8, AXIS_H / 2);
      for (let tick = Math.ceil(state.start / step) * step; tick <= state.end; tick += step) {
        const x = Math.round(xOf(tick)) + 0.5;
        if (x < GUTTER) continue;
        ctx.strokeStyle = palette.line;
        ctx.beginPath();
        ctx.moveTo(x, AXIS_H - 6);
        ctx.lineTo(x, height);
        ctx.stroke();
        ctx.fillStyle = palette.muted;
        ctx.fillText(clock(tick, step), x + 4, AXIS_H / 2);
      }
    }

    // --- drawing --------------------------------------------------------------------------------
    let hits = []; // what the pointer may land on: {x, y, w, h, item}
    function draw() {
      ctx.fillStyle = palette.bg;
      ctx.fillRect(0, 0, width, height);
      const view = viewHeight();
      const top = state.scrollY;
      ctx.save();
      ctx.beginPath();
      ctx.rect(0, AXIS_H, width, view);
      ctx.clip();
      // Lines: node headers, zebra rows and labels in the gutter.
      ctx.font = "12px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      for (const line of lines) {
        const y = AXIS_H + line.y - top;
        if (y + NODE_H < AXIS_H || y > height) continue;
        if (line.kind === "node") {
          ctx.fillStyle = palette.soft;
          ctx.fillRect(0, y, width, NODE_H);
          ctx.fillStyle = palette.fg;
          ctx.font = "600 12px system-ui, sans-serif";
          const node = line.node.node_id ? `node ${line.node.node_id.slice(0, 12)}` : "no node recorded";
          ctx.fillText(`${node} · ${line.node.rows} worker${line.node.rows === 1 ? "" : "s"}`, 8, y + NODE_H / 2);
          ctx.font = "12px system-ui, sans-serif";
        } else {
          if (line.row.position % 2) {
            ctx.fillStyle = palette.soft;
            ctx.globalAlpha = 0.55;
            ctx.fillRect(GUTTER, y, width - GUTTER, ROW_H);
            ctx.globalAlpha = 1;
          }
          ctx.fillStyle = palette.muted;
          const worker = line.row.worker ? `worker ${line.row.worker.slice(0, 8)}` : "no worker recorded";
          ctx.fillText(worker, 20, y + ROW_H / 2);
        }
      }
      ctx.strokeStyle = palette.line;
      ctx.beginPath();
      ctx.moveTo(GUTTER - 0.5, AXIS_H);
      ctx.lineTo(GUTTER - 0.5, height);
      ctx.stroke();
      // Bars or cells, clipped to the plot.
      ctx.beginPath();
      ctx.rect(GUTTER, AXIS_H, width - GUTTER, view);
      ctx.clip();
      hits = [];
      let drawn = 0;
      const loaded = state.loaded;
      if (loaded) {
        for (const item of loaded.items) {
          const row = rowById.get(item.row);
          if (!row) continue;
          const y = AXIS_H + row.y - top + BAR_PAD;
          if (y + ROW_H < AXIS_H || y > height) continue;
          const x1 = xOf(item.start), x2 = xOf(item.end);
          if (x2 < GUTTER || x1 > width) continue;
          // A pixel of gap at the end of a wide bar: back-to-back tasks on a worker stay apart.
          const right = Math.min(width, x2), left = Math.max(GUTTER, x1);
          const w = Math.max(1, right - left - (right - left > 4 ? 1 : 0));
          const h = ROW_H - 2 * BAR_PAD;
          ctx.fillStyle = colorOf(item.key);
          ctx.fillRect(left, y, w, h);
          // A cell's failures show even where most of it finished (or, by function, whatever it ran).
          if (item.failed && (state.colorBy === "function" || names.state[item.key] !== "FAILED")) {
            ctx.fillStyle = palette.bad;
            ctx.fillRect(left, y, w, 2);
          }
          if (loaded.mode === "bars" && w > 60) {
            const label = names.function[item.fkey];
            if (label) {
              ctx.fillStyle = textOn(colorOf(item.key));
              ctx.font = "11px system-ui, sans-serif";
              ctx.save();
              ctx.beginPath();
              ctx.rect(left, y, w, h);
              ctx.clip();
              ctx.fillText(label, left + 4, y + h / 2 + 0.5);
              ctx.restore();
            }
          }
          if (state.selected && item.task === state.selected.task && item.attempt === state.selected.attempt) {
            ctx.strokeStyle = palette.focus;
            ctx.lineWidth = 2;
            ctx.strokeRect(left - 1, y - 1, w + 2, h + 2);
            ctx.lineWidth = 1;
          }
          hits.push({ x: left, y, w, h, item });
          drawn++;
        }
      }
      ctx.restore();
      drawAxis();
      drawScrollbar();
      canvas.dataset.drawn = String(drawn);
      canvas.dataset.mode = loaded ? loaded.mode : "";
      canvas.dataset.sample = sampleBar();
      windowText.textContent = `${fullTime(state.start)} → ${fullTime(state.end)} UTC · ${duration(state.end - state.start)} shown`;
    }

    function drawScrollbar() {
      const view = viewHeight();
      if (contentHeight <= view) return;
      const size = Math.max(24, (view / contentHeight) * view);
      const y = AXIS_H + (state.scrollY / maxScroll()) * (view - size);
      ctx.fillStyle = palette.muted;
      ctx.globalAlpha = 0.45;
      ctx.fillRect(width - 6, y, 4, size);
      ctx.globalAlpha = 1;
    }

    // The widest bar in view, for tests and for a first keyboard selection: "x,y,task,attempt".
    function sampleBar() {
      let best = null;
      for (const hit of hits) if (hit.item.task && (!best || hit.w > best.w)) best = hit;
      if (!best) return "";
      const x = Math.round(best.x + best.w / 2), y = Math.round(best.y + best.h / 2);
      return JSON.stringify({ x, y, href: taskUrl(best.item) });
    }

    const taskUrl = (item) => `${sessionPath}/tasks/${encodeURIComponent(item.task)}?attempt=${item.attempt}`;

    // --- loading --------------------------------------------------------------------------------
    let sequence = 0, timer = 0;
    function schedule(delay = 120) {
      clearTimeout(timer);
      timer = setTimeout(load, delay);
    }

    async function load() {
      const [first, last] = visibleRows();
      const shown = last - first + 1;
      // A screen of rows above and below, so a small scroll does not wait for the server.
      const rowStart = Math.max(0, first - shown), rowCount = Math.min(1000, shown * 3);
      const query = new URLSearchParams({
        start_ms: String(Math.floor(state.start)), end_ms: String(Math.ceil(state.end)),
        width_px: String(Math.round(plotWidth())), color_by: state.colorBy,
        row_start: String(rowStart), row_count: String(rowCount),
      });
      if (summary.job_id) query.set("job_id", summary.job_id);
      const mine = ++sequence;
      status.textContent = "Loading the bars…";
      canvas.setAttribute("aria-busy", "true");
      let answer;
      try {
        const response = await fetch(`/api/v1${sessionPath}/timeline/bars?${query}`);
        answer = await response.json();
        if (!response.ok) throw new Error(answer.error || response.statusText);
      } catch (error) {
        if (mine === sequence) status.textContent = `Could not load the bars: ${error.message}`;
        return;
      }
      if (mine !== sequence) return; // a newer window was asked for meanwhile
      canvas.removeAttribute("aria-busy");
      state.loaded = answer.mode === "bars" ? {
        mode: "bars",
        items: answer.bars.map(([row, start, end, key, task, attempt, skey, fkey]) =>
          ({ row, start, end, key, task, attempt, skey, fkey })),
      } : {
        mode: "cells",
        items: answer.cells.map(([row, px, endPx, count, key, failed]) => ({
          row, key, count, failed,
          start: answer.start_ms + px * answer.ms_per_px,
          end: answer.start_ms + (endPx + 1) * answer.ms_per_px,
          px, cell: true,
        })),
        msPerPx: answer.ms_per_px,
      };
      canvas.dataset.state = "ready";
      const rowsText = `workers ${rowStart + 1}–${Math.min(rows.length, rowStart + rowCount)} of ${rows.length}`;
      status.textContent = answer.mode === "bars"
        ? `${answer.attempts.toLocaleString("en")} attempts in this window (${rowsText}).`
        : `${answer.attempts.toLocaleString("en")} attempts in this window (${rowsText}): too many to draw one by one, `
          + `so each cell is a pixel (${duration(answer.ms_per_px)}) of a worker. Zoom in to see each attempt.`;
      draw();
    }

    // --- state in the URL -----------------------------------------------------------------------
    let urlTimer = 0;
    function remember() {
      clearTimeout(urlTimer);
      urlTimer = setTimeout(() => {
        const next = new URLSearchParams(location.search);
        next.set("start_ms", String(Math.floor(state.start)));
        next.set("end_ms", String(Math.ceil(state.end)));
        next.set("color_by", state.colorBy);
        const [first] = visibleRows();
        if (first > 0) next.set("row", String(first)); else next.delete("row");
        history.replaceState(null, "", `${location.pathname}?${next}`);
      }, 150);
    }

    function changed() {
      draw();
      schedule();
      remember();
    }

    // --- navigation -----------------------------------------------------------------------------
    function zoom(factor, atMs) {
      const span = state.end - state.start;
      const maxSpan = (home.end - home.start) * 4;
      const next = Math.min(maxSpan, Math.max(MIN_SPAN_MS, span * factor));
      const anchor = atMs ?? (state.start + state.end) / 2;
      const share = (anchor - state.start) / span;
      state.start = anchor - share * next;
      state.end = state.start + next;
      changed();
    }
    function pan(ms) {
      state.start += ms;
      state.end += ms;
      changed();
    }
    function scroll(pixels) {
      state.scrollY = Math.min(maxScroll(), Math.max(0, state.scrollY + pixels));
      changed();
    }
    function reset() {
      Object.assign(state, { start: home.start, end: home.end });
      changed();
    }

    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      if (event.shiftKey) return scroll(event.deltaY);
      if (Math.abs(event.deltaX) > Math.abs(event.deltaY)) {
        return pan((event.deltaX / plotWidth()) * (state.end - state.start));
      }
      const rect = canvas.getBoundingClientRect();
      const x = event.clientX - rect.left;
      zoom(Math.exp(event.deltaY * 0.0015), x >= GUTTER ? msOf(x) : undefined);
    }, { passive: false });

    let drag = null;
    canvas.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      drag = { x: event.clientX, y: event.clientY, start: state.start, end: state.end, scrollY: state.scrollY, moved: false };
      canvas.setPointerCapture(event.pointerId);
    });
    canvas.addEventListener("pointermove", (event) => {
      if (drag) {
        const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
        if (!drag.moved && Math.hypot(dx, dy) < 4) return;
        drag.moved = true;
        canvas.classList.add("dragging");
        tip.hidden = true;
        const shift = (-dx / plotWidth()) * (drag.end - drag.start);
        state.start = drag.start + shift;
        state.end = drag.end + shift;
        state.scrollY = Math.min(maxScroll(), Math.max(0, drag.scrollY - dy));
        changed();
        return;
      }
      hover(event);
    });
    canvas.addEventListener("pointerup", (event) => {
      const was = drag;
      drag = null;
      canvas.classList.remove("dragging");
      if (was && !was.moved) click(event);
    });
    canvas.addEventListener("pointerleave", () => { tip.hidden = true; });

    function hitAt(event) {
      const rect = canvas.getBoundingClientRect();
      const x = event.clientX - rect.left, y = event.clientY - rect.top;
      // Thin bars get a few pixels of slack: a 1-pixel task is still clickable.
      let found = null;
      for (const hit of hits) {
        if (y >= hit.y && y <= hit.y + hit.h && x >= hit.x - 2 && x <= hit.x + hit.w + 2) {
          if (!found || Math.abs(x - (hit.x + hit.w / 2)) < Math.abs(x - (found.x + found.w / 2))) found = hit;
        }
      }
      return { found, x, y };
    }

    function hover(event) {
      const { found, x, y } = hitAt(event);
      canvas.classList.toggle("over-bar", Boolean(found));
      if (!found) {
        tip.hidden = true;
        return;
      }
      tip.replaceChildren(...describe(found.item));
      tip.hidden = false;
      const left = Math.min(x + 14, width - tip.offsetWidth - 4);
      tip.style.left = `${Math.max(4, left)}px`;
      tip.style.top = `${y + 16 + tip.offsetHeight > height ? y - tip.offsetHeight - 8 : y + 16}px`;
    }

    function describe(item) {
      const parts = [];
      const title = document.createElement("b");
      const line = (text) => { const div = document.createElement("div"); div.textContent = text; return div; };
      if (item.cell) {
        title.textContent = `${item.count.toLocaleString("en")} attempt${item.count === 1 ? "" : "s"} starting here`;
        parts.push(title, line(`mostly ${names[state.colorBy][item.key] ?? "—"}${item.failed ? `, ${item.failed} failed` : ""}`),
                   line(`${fullTime(item.start)} UTC, ${duration(state.loaded.msPerPx)} wide`), line("Click to zoom in"));
      } else {
        title.textContent = names.function[item.fkey] ?? `task ${item.task.slice(0, 16)}`;
        parts.push(title,
                   line(`${names.state[item.skey] ?? "—"} · attempt ${item.attempt}`),
                   line(`${fullTime(item.start)} UTC, ran ${duration(item.end - item.start)}`),
                   line(`task ${item.task}`));
      }
      return parts;
    }

    function click(event) {
      const { found } = hitAt(event);
      if (!found) return;
      if (found.item.cell) {
        // A cell holds many attempts: zoom into it until they come apart.
        zoom(1 / 8, (found.item.start + found.item.end) / 2);
      } else {
        location.assign(taskUrl(found.item));
      }
    }

    // --- keyboard -------------------------------------------------------------------------------
    function select(direction) {
      const bars = hits.filter((hit) => hit.item.task).sort((a, b) => a.item.start - b.item.start || a.y - b.y);
      if (!bars.length) return;
      let index = state.selected ? bars.findIndex((hit) => hit.item === state.selected) : -1;
      index = index < 0 ? (direction > 0 ? 0 : bars.length - 1) : Math.min(bars.length - 1, Math.max(0, index + direction));
      state.selected = bars[index].item;
      showSelected();
      draw();
    }

    function showSelected() {
      const item = state.selected;
      selectedText.replaceChildren();
      if (!item) return;
      const link = document.createElement("a");
      link.href = taskUrl(item);
      link.textContent = `Open task ${item.task.slice(0, 16)}… attempt ${item.attempt}`;
      const what = `${names.function[item.fkey] ?? "—"} (${names.state[item.skey] ?? "—"})`;
      selectedText.append(`Selected: ${what}, ${fullTime(item.start)} UTC, ran ${duration(item.end - item.start)}. `, link);
    }

    canvas.addEventListener("keydown", (event) => {
      const span = state.end - state.start;
      const handled = {
        ArrowLeft: () => pan(-span * 0.1), ArrowRight: () => pan(span * 0.1),
        ArrowUp: () => scroll(-ROW_H * 2), ArrowDown: () => scroll(ROW_H * 2),
        PageUp: () => scroll(-viewHeight() * 0.9), PageDown: () => scroll(viewHeight() * 0.9),
        "+": () => zoom(0.5), "=": () => zoom(0.5), "-": () => zoom(2), "0": reset, Home: reset,
        "[": () => select(-1), "]": () => select(1),
        Enter: () => { if (state.selected) location.assign(taskUrl(state.selected)); },
      }[event.key];
      if (!handled) return;
      event.preventDefault();
      handled();
    });

    for (const button of document.querySelectorAll("[data-zoom]")) {
      button.addEventListener("click", () => {
        const kind = button.dataset.zoom;
        if (kind === "in") zoom(0.5);
        else if (kind === "out") zoom(2);
        else reset();
      });
    }

    // Colour changes here; a job reloads the page (its rows, extent and legend are the page's data).
    for (const radio of document.querySelectorAll('input[name="color_by"]')) {
      radio.addEventListener("change", () => {
        state.colorBy = radio.value;
        state.loaded = null;
        state.selected = null;
        showSelected();
        drawLegend();
        changed();
      });
    }
    document.getElementById("gantt-job").addEventListener("change", (event) => {
      const next = new URLSearchParams({ color_by: state.colorBy });
      if (event.target.value) next.set("job_id", event.target.value);
      location.assign(`${location.pathname}?${next}`);
    });
    document.getElementById("gantt-form").addEventListener("submit", (event) => event.preventDefault());

    // --- theme and size -------------------------------------------------------------------------
    const repaint = () => { readPalette(); drawLegend(); draw(); };
    new MutationObserver(repaint).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", repaint);
    let lastWidth = 0;
    new ResizeObserver(() => {
      resize();
      draw();
      if (Math.abs(box.clientWidth - lastWidth) > 1) {
        const first = lastWidth === 0;
        lastWidth = box.clientWidth;
        schedule(first ? 0 : 150); // the first answer as soon as the plot has a width
      }
    }).observe(box);

    readPalette();
    drawLegend();
    resize();
    draw();
  });
})();
