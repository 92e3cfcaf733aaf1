// The metrics pages: the list's live filter, and a metric's line chart drawn as SVG from the range
// query's answer the page embeds (#chart-data). Axes in UTC and in the metric's unit, a series per
// node (or one for the cluster), a legend that shows and hides series, a crosshair with the values.
(function () {
  "use strict";

  const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
                  "#9c755f", "#86bcb6", "#8cd17d", "#d4a6c8"];
  const SVG = "http://www.w3.org/2000/svg";
  const MARGIN = { left: 72, right: 18, top: 14, bottom: 42 };

  document.addEventListener("DOMContentLoaded", () => {
    listFilter();
    chartForm();
    const dataNode = document.getElementById("chart-data");
    if (dataNode) chart(JSON.parse(dataNode.textContent));
  });

  // --- the list: filter as you type, the text kept in the URL ----------------------------------
  function listFilter() {
    const input = document.getElementById("metric-filter");
    if (!input) return;
    const rows = [...document.querySelectorAll("#metric-table tbody tr")];
    const count = document.getElementById("metric-count");
    const none = document.getElementById("metric-none");
    const apply = () => {
      const text = input.value.trim().toLowerCase();
      let shown = 0;
      for (const row of rows) {
        row.hidden = Boolean(text) && !row.dataset.name.toLowerCase().includes(text);
        if (!row.hidden) shown++;
      }
      count.textContent = `${shown} of ${rows.length} metrics`;
      none.hidden = shown > 0;
      const params = new URLSearchParams(location.search);
      if (text) params.set("q", input.value.trim()); else params.delete("q");
      const query = params.toString();
      history.replaceState(null, "", location.pathname + (query ? `?${query}` : ""));
    };
    input.addEventListener("input", apply);
    document.getElementById("metric-filter-form").addEventListener("submit", (event) => event.preventDefault());
    // Enter on a filter that leaves one metric opens it.
    input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      const shown = rows.filter((row) => !row.hidden);
      if (shown.length === 1) location.assign(shown[0].querySelector("a").href);
    });
    apply();
  }

  // --- the chart's form: names to pick from, quick links that exist, a change applies at once ----
  function chartForm() {
    const form = document.getElementById("chart-form");
    if (!form) return;
    for (const select of form.querySelectorAll("select")) select.addEventListener("change", () => form.requestSubmit());
    // An empty choice (the automatic step) is left out of the URL: the query takes no empty number.
    form.addEventListener("formdata", (event) => {
      for (const [key, value] of [...event.formData]) if (value === "") event.formData.delete(key);
    });
    const list = document.getElementById("metric-names");
    const metricsPath = location.pathname.replace(/\/query$/, "");
    fetch(`/api/v1${metricsPath}`).then((response) => (response.ok ? response.json() : { items: [] })).then((answer) => {
      const names = new Set(answer.items.map((item) => item.name));
      for (const name of names) {
        const option = document.createElement("option");
        option.value = name;
        list.append(option);
      }
      for (const link of document.querySelectorAll("[data-quick] a[data-metric]")) link.hidden = !names.has(link.dataset.metric);
    }, () => {});
  }

  // --- values and times as people read them ------------------------------------------------------
  function unitOf(name) {
    if (/utilization|percent/.test(name)) return "%";
    if (/bytes|_mem_|memory|gram_/.test(name)) return "B";
    if (/_ms(_|$)/.test(name)) return "ms";
    if (/_seconds?(_|$)|_s$/.test(name)) return "s";
    return "";
  }
  function format(value, unit) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    if (unit === "B") {
      const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
      let scaled = Math.abs(value), index = 0;
      while (scaled >= 1024 && index < units.length - 1) { scaled /= 1024; index++; }
      return `${(Math.sign(value) * scaled).toFixed(scaled >= 100 || index === 0 ? 0 : 1)} ${units[index]}`;
    }
    const abs = Math.abs(value);
    let text;
    if (abs >= 1e9) text = `${(value / 1e9).toFixed(1)}G`;
    else if (abs >= 1e6) text = `${(value / 1e6).toFixed(1)}M`;
    else if (abs >= 1e4) text = `${(value / 1e3).toFixed(1)}k`;
    else if (abs >= 100 || Number.isInteger(value)) text = value.toFixed(0);
    else if (abs >= 1) text = value.toFixed(2);
    else text = value.toPrecision(2);
    return unit ? `${text} ${unit}` : text;
  }
  const pad = (n, size = 2) => String(n).padStart(size, "0");
  function clock(ms, withSeconds) {
    const date = new Date(ms);
    return `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}${withSeconds ? `:${pad(date.getUTCSeconds())}` : ""}`;
  }
  const day = (ms) => new Date(ms).toISOString().slice(0, 10);

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const power = 10 ** Math.floor(Math.log10(raw));
    for (const factor of [1, 2, 2.5, 5, 10]) if (factor * power >= raw) return factor * power;
    return 10 * power;
  }
  const TIME_STEPS = [1e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 108e5, 216e5, 432e5, 864e5];

  // --- the chart ----------------------------------------------------------------------------------
  function chart(data) {
    const svg = document.getElementById("chart-svg");
    const tip = document.getElementById("chart-tip");
    const legend = document.getElementById("chart-legend");
    const unit = unitOf(data.name);
    const series = data.series.map((entry, index) => ({
      name: entry.node, points: entry.points.filter(([, value]) => value !== null), color: COLORS[index % COLORS.length],
      visible: true,
    }));

    for (const entry of series) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.setAttribute("aria-pressed", "true");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = entry.color;
      button.append(swatch, entry.name);
      button.addEventListener("click", () => {
        entry.visible = !entry.visible;
        button.setAttribute("aria-pressed", String(entry.visible));
        draw();
      });
      item.append(button);
      legend.append(item);
    }

    const element = (name, attributes, parent) => {
      const node = document.createElementNS(SVG, name);
      for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
      parent.append(node);
      return node;
    };

    let geometry = null;
    function draw() {
      svg.replaceChildren();
      const width = svg.clientWidth, height = svg.clientHeight;
      svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
      const shown = series.filter((entry) => entry.visible && entry.points.length);
      const all = shown.flatMap((entry) => entry.points);
      const times = all.map(([time]) => time), values = all.map(([, value]) => value);
      // One sample (a session that ended after one scrape) still gets an axis: a step either side.
      let t0 = Math.min(...times), t1 = Math.max(...times);
      if (!(t1 > t0)) { t0 -= data.step_s * 1000; t1 += data.step_s * 1000; }
      let v0 = Math.min(0, ...values), v1 = Math.max(...values);
      if (!(v1 > v0)) v1 = v0 + (v0 === 0 ? 1 : Math.abs(v0));
      v1 += (v1 - v0) * 0.05; // headroom: the highest point is not drawn on the frame
      if (!all.length) { t0 = 0; t1 = 1; v0 = 0; v1 = 1; }
      const yStep = niceStep(v1 - v0, 5);
      v1 = Math.ceil(v1 / yStep) * yStep;
      const plotW = width - MARGIN.left - MARGIN.right, plotH = height - MARGIN.top - MARGIN.bottom;
      const x = (time) => MARGIN.left + ((time - t0) / (t1 - t0)) * plotW;
      const y = (value) => MARGIN.top + plotH - ((value - v0) / (v1 - v0)) * plotH;
      geometry = { x, y, t0, t1, plotW, plotH, shown };

      const axes = element("g", {}, svg);
      for (let value = Math.ceil(v0 / yStep) * yStep; value <= v1 + yStep / 1e6; value += yStep) {
        const py = Math.round(y(value)) + 0.5;
        element("line", { class: "grid", x1: MARGIN.left, x2: width - MARGIN.right, y1: py, y2: py }, axes);
        element("text", { x: MARGIN.left - 8, y: py + 4, "text-anchor": "end" }, axes).textContent = format(value, unit);
      }
      const tStep = TIME_STEPS.find((step) => (step / (t1 - t0)) * plotW >= 100) || TIME_STEPS[TIME_STEPS.length - 1];
      let lastDay = "";
      for (let time = Math.ceil(t0 / tStep) * tStep; time <= t1; time += tStep) {
        const px = Math.round(x(time)) + 0.5;
        element("line", { class: "grid", x1: px, x2: px, y1: MARGIN.top, y2: MARGIN.top + plotH }, axes);
        element("text", { x: px, y: MARGIN.top + plotH + 16, "text-anchor": "middle" }, axes).textContent = clock(time, tStep < 6e4);
        if (day(time) !== lastDay) {
          lastDay = day(time);
          element("text", { x: px, y: MARGIN.top + plotH + 31, "text-anchor": "middle" }, axes).textContent = lastDay;
        }
      }
      element("line", { class: "axis", x1: MARGIN.left, x2: width - MARGIN.right, y1: MARGIN.top + plotH + 0.5,
                        y2: MARGIN.top + plotH + 0.5 }, axes);
      element("text", { x: 4, y: MARGIN.top + plotH + 31 }, axes).textContent = "UTC";

      const lines = element("g", {}, svg);
      let points = 0;
      for (const entry of shown) {
        const path = entry.points.map(([time, value], index) => `${index ? "L" : "M"}${x(time).toFixed(1)},${y(value).toFixed(1)}`);
        element("path", { class: "line", d: path.join(""), stroke: entry.color, "data-series": entry.name }, lines);
        // Dots where the samples are few enough to tell apart (and always for a lone one).
        if (entry.points.length <= Math.max(1, plotW / 8)) {
          for (const [time, value] of entry.points) {
            element("circle", { cx: x(time).toFixed(1), cy: y(value).toFixed(1), r: 3, fill: entry.color }, lines);
          }
        }
        points += entry.points.length;
      }
      svg.dataset.series = String(shown.length);
      svg.dataset.points = String(points);
      cross = element("line", { class: "cross", y1: MARGIN.top, y2: MARGIN.top + plotH, visibility: "hidden" }, svg);
    }

    let cross = null;
    svg.addEventListener("pointermove", (event) => {
      if (!geometry || !geometry.shown.length) return;
      const rect = svg.getBoundingClientRect();
      const px = event.clientX - rect.left;
      const time = geometry.t0 + ((px - MARGIN.left) / geometry.plotW) * (geometry.t1 - geometry.t0);
      // The sample time nearest the pointer, and each shown series' value there.
      let nearest = null;
      for (const entry of geometry.shown) {
        for (const [t] of entry.points) if (nearest === null || Math.abs(t - time) < Math.abs(nearest - time)) nearest = t;
      }
      if (nearest === null) return;
      const cx = geometry.x(nearest);
      cross.setAttribute("x1", cx);
      cross.setAttribute("x2", cx);
      cross.setAttribute("visibility", "visible");
      tip.replaceChildren();
      const head = document.createElement("b");
      head.textContent = `${day(nearest)} ${clock(nearest, true)} UTC`;
      tip.append(head);
      for (const entry of geometry.shown) {
        const found = entry.points.find(([t]) => t === nearest);
        if (!found) continue;
        const line = document.createElement("div");
        const swatch = document.createElement("span");
        swatch.style.cssText = `display:inline-block;width:10px;height:3px;margin-right:6px;vertical-align:middle;background:${entry.color}`;
        line.append(swatch, `${entry.name}: ${format(found[1], unit)}`);
        tip.append(line);
      }
      tip.hidden = false;
      const left = cx + 14 + tip.offsetWidth > rect.width ? cx - tip.offsetWidth - 14 : cx + 14;
      tip.style.left = `${Math.max(0, left) + 8}px`;
      tip.style.top = `${MARGIN.top + 8}px`;
    });
    svg.addEventListener("pointerleave", () => {
      tip.hidden = true;
      if (cross) cross.setAttribute("visibility", "hidden");
    });

    new ResizeObserver(draw).observe(svg);
  }
})();
