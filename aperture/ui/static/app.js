/* aperture dashboard. One script for every page: it reads the page id and the
 * caller from <main data-*>, fetches the page's data from /api/ and draws it.
 * Every value from the server is put in the page as text (textContent), never
 * as HTML: captured prompts and answers can hold anything. */
"use strict";

(() => {
  const main = document.getElementById("main");
  if (!main || !main.dataset.page) return;
  const PAGE = main.dataset.page;
  const ME = main.dataset.me;
  const ADMIN = main.dataset.role === "admin";
  const SUBJECT = main.dataset.subject;
  const IDENT = main.dataset.ident;
  const params = new URLSearchParams(location.search);

  // --- elements and formatting ---------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const nf = new Intl.NumberFormat("en-US");
  const fmtInt = (n) => nf.format(n || 0);
  function fmtCompact(n) {
    n = n || 0;
    if (Math.abs(n) < 10000) return nf.format(n);
    for (const [u, d] of [["k", 1e3], ["M", 1e6], ["G", 1e9], ["T", 1e12]]) {
      const v = n / d;
      if (Math.abs(v) < 999.5) return (Math.abs(v) < 9.95 ? v.toFixed(1) : v.toFixed(0)) + u;
    }
    return nf.format(n);
  }
  function fmtUsd(usd) {
    if (usd === 0) return "$0.00";
    if (Math.abs(usd) >= 1) return "$" + usd.toFixed(2);
    if (Math.abs(usd) >= 0.01) return "$" + usd.toFixed(4);
    return "$" + usd.toPrecision(3);
  }
  // A cost cell: "no price" when nothing had a price, never $0.
  function costText(row) {
    if (row.cost_usd === null || row.cost_usd === undefined) return "no price";
    const base = fmtUsd(row.cost_usd);
    return row.unpriced_requests ? `${base} + ${fmtInt(row.unpriced_requests)} unpriced` : base;
  }
  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "—";
    if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
    const s = ms / 1000;
    if (s < 120) return `${s.toFixed(1)} s`;
    return `${(s / 60).toFixed(1)} min`;
  }
  const tokensOf = (r) => (r.input_tokens || 0) + (r.output_tokens || 0) +
    (r.cache_read_tokens || 0) + (r.cache_write_tokens || 0);

  function statePill(state, status) {
    const cls = state === "complete" ? "good" : state === "refused" ? "warn" : "bad";
    return el("span", { class: `pill ${cls}`, text: status ? `${status} ${state}` : state });
  }

  // --- fetching ------------------------------------------------------------------------

  async function getJSON(path, query) {
    const qs = query ? "?" + new URLSearchParams(
      Object.entries(query).filter(([, v]) => v !== null && v !== undefined && v !== "")) : "";
    const resp = await fetch(path + qs, { headers: { accept: "application/json" } });
    const text = await resp.text();
    let body = null;
    try { body = JSON.parse(text); } catch (e) { body = null; }
    if (!resp.ok) {
      const err = new Error(errorText(body, text, resp.status));
      err.status = resp.status;
      throw err;
    }
    return body;
  }

  function errorText(body, text, status) {
    if (body && typeof body === "object") {
      const e = body.error;
      if (e && typeof e === "object" && e.message) return e.message;
      if (typeof e === "string") return e;
      if (body.message) return body.message;
      if (body.Message) return body.Message;
    }
    return (text || "").trim().slice(0, 300) || `HTTP ${status}`;
  }

  function clear() {
    const h1 = main.querySelector("h1");
    main.replaceChildren(h1);
  }

  function fail(where, err) {
    const p = el("p", { class: "error", role: "alert", text: `${where}: ${err.message}` });
    (where instanceof Node ? where : main).append(p);
  }

  // --- the range picker, filters in the URL --------------------------------------------

  const RANGES = [["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"],
    ["90d", "Last 90 days"], ["all", "All time"]];

  function currentRange() {
    const r = params.get("range") || "7d";
    return RANGES.some(([k]) => k === r) ? r : "7d";
  }
  function sinceOf(range) { return range === "all" ? null : range; }
  function bucketOf(range) { return range === "24h" ? "hour" : "day"; }

  function setParam(name, value) {
    if (value === null || value === undefined || value === "") params.delete(name);
    else params.set(name, value);
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
  }

  function rangePicker(onChange) {
    const select = el("select", { id: "range", name: "range" },
      RANGES.map(([k, label]) => el("option", { value: k, text: label, selected: k === currentRange() })));
    select.addEventListener("change", () => { setParam("range", select.value); onChange(); });
    return el("label", { for: "range" }, "Time range", select);
  }

  function textFilter(name, label, onChange) {
    const input = el("input", { type: "text", id: `f-${name}`, name, value: params.get(name) || "",
      autocomplete: "off" });
    input.addEventListener("change", () => { setParam(name, input.value.trim()); onChange(); });
    return el("label", { for: `f-${name}` }, label, input);
  }

  function selectFilter(name, label, options, onChange) {
    const select = el("select", { id: `f-${name}`, name },
      el("option", { value: "", text: "any" }),
      options.map((o) => el("option", { value: o, text: o, selected: params.get(name) === o })));
    select.addEventListener("change", () => { setParam(name, select.value); onChange(); });
    return el("label", { for: `f-${name}` }, label, select);
  }

  // --- charts, cards, tables ------------------------------------------------------------

  const PALETTE = ["#2456c8", "#e07a1f", "#11803c", "#b42318", "#7b3fbf", "#0f8a8a", "#9a6700",
    "#c2185b", "#5c6370", "#3b82f6"];

  function chartBox(title, summary) {
    const canvas = el("canvas", { role: "img", "aria-label": summary || title });
    const box = el("section", { class: "chart" }, el("h2", { text: title }),
      el("div", { class: "canvas" }, canvas));
    return { box, canvas };
  }

  function drawChart(canvas, config) {
    if (!window.Chart) return null;
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false,
      animation: false, plugins: { legend: { position: "bottom" } } }, config.options || {});
    const dark = matchMedia("(prefers-color-scheme: dark)").matches;
    window.Chart.defaults.color = dark ? "#c9d1d9" : "#3b4048";
    window.Chart.defaults.borderColor = dark ? "#343a42" : "#dcdfe4";
    return new window.Chart(canvas, config);
  }

  function cards(items) {
    return el("div", { class: "cards" }, items.map(([label, value, id, raw]) =>
      el("div", { class: "card", "data-stat": id, "data-value": raw === undefined ? "" : raw },
        el("div", { class: "label", text: label }), el("div", { class: "value", text: value }))));
  }

  // columns: [key, label, {num, render(row) -> node|string, sort(row) -> value}]
  function table(columns, rows, opts = {}) {
    let sortKey = opts.sortKey || null;
    let desc = true;
    const tbody = el("tbody");
    const thead = el("thead");
    const caption = opts.caption ? el("caption", { class: "muted", text: opts.caption }) : null;
    function sortValue(col, row) {
      return col[2] && col[2].sort ? col[2].sort(row) : row[col[0]];
    }
    function fill() {
      let list = rows.slice();
      if (sortKey) {
        const col = columns.find((c) => c[0] === sortKey);
        list.sort((a, b) => {
          const x = sortValue(col, a), y = sortValue(col, b);
          const r = x === y ? 0 : (x === null || x === undefined) ? 1 : (y === null || y === undefined) ? -1 : x < y ? -1 : 1;
          return desc ? -r : r;
        });
      }
      tbody.replaceChildren(...list.map((row) => {
        const tr = el("tr", { "data-key": opts.key ? opts.key(row) : null });
        for (const col of columns) {
          const o = col[2] || {};
          const v = o.render ? o.render(row) : row[col[0]];
          tr.append(el("td", { class: o.num ? "num" : null, "data-col": col[0],
            "data-value": typeof row[col[0]] === "object" ? null : row[col[0]] },
          v === null || v === undefined ? "—" : v));
        }
        return tr;
      }));
    }
    const headRow = el("tr");
    for (const col of columns) {
      const o = col[2] || {};
      const th = el("th", { class: o.num ? "num" : null, scope: "col" });
      if (opts.sortable && o.sortable !== false) {
        const b = el("button", { type: "button", text: col[1] });
        b.addEventListener("click", () => {
          desc = sortKey === col[0] ? !desc : true;
          sortKey = col[0];
          for (const x of thead.querySelectorAll("th")) x.removeAttribute("aria-sort");
          th.setAttribute("aria-sort", desc ? "descending" : "ascending");
          fill();
        });
        th.append(b);
      } else {
        th.textContent = col[1];
      }
      headRow.append(th);
    }
    thead.append(headRow);
    fill();
    return el("div", { class: "scroll" }, el("table", { id: opts.id || null }, caption, thead, tbody));
  }

  function emptyState() {
    const curl = `curl -s ${location.origin}/v1/messages -H 'content-type: application/json' \\\n` +
      `  -d '{"model":"claude-sonnet-4-6","max_tokens":64,"messages":[{"role":"user","content":"ping"}]}'`;
    return el("div", { class: "empty", id: "empty" },
      el("p", { text: "No traffic yet — try this curl, then reload:" }),
      el("pre", {}, el("code", { text: curl })),
      el("p", { class: "muted" }, "Point your clients (Claude Code, Codex, the SDKs) at ",
        el("code", { text: location.origin }), "; see the Models page for what you may use."));
  }

  const TOKEN_KINDS = [["input_tokens", "Input"], ["output_tokens", "Output"],
    ["cache_read_tokens", "Cache read"], ["cache_write_tokens", "Cache write"]];

  function usageColumns(first) {
    return [
      first,
      ["requests", "Requests", { num: true, render: (r) => fmtInt(r.requests) }],
      ["input_tokens", "Input", { num: true, render: (r) => fmtInt(r.input_tokens) }],
      ["output_tokens", "Output", { num: true, render: (r) => fmtInt(r.output_tokens) }],
      ["cache_read_tokens", "Cache read", { num: true, render: (r) => fmtInt(r.cache_read_tokens) }],
      ["cache_write_tokens", "Cache write", { num: true, render: (r) => fmtInt(r.cache_write_tokens) }],
      ["reasoning_tokens", "Reasoning", { num: true, render: (r) => fmtInt(r.reasoning_tokens) }],
      ["cost_usd", "Est. cost", { num: true, render: costText, sort: (r) => r.cost_usd }],
    ];
  }

  function timeLabel(iso, bucket) {
    const d = new Date(iso);
    return bucket === "hour"
      ? d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit" })
      : d.toLocaleDateString(undefined, { timeZone: "UTC", month: "short", day: "numeric" });
  }

  // --- Dashboard ---------------------------------------------------------------------------

  async function dashboard() {
    const user = SUBJECT || ME;
    const body = el("div");
    const toolbar = el("div", { class: "toolbar" }, rangePicker(render));
    clear();
    main.append(toolbar, body);
    async function render() {
      body.replaceChildren(el("p", { class: "loading", role: "status", text: "Loading…" }));
      const range = currentRange();
      const since = sinceOf(range), bucket = bucketOf(range);
      const who = user;  // the caller's own, or (admins) the one in the path
      try {
        const [summary, byModel, timeline] = await Promise.all([
          getJSON("/api/summary", { since, user: who }),
          getJSON("/api/usage", { since, user: who, by: "model" }),
          getJSON("/api/usage", { since, user: who, bucket: since ? bucket : "day" }),
        ]);
        body.replaceChildren();
        const t = summary.totals;
        if (!t.requests) {
          body.append(el("p", { class: "muted", text: `No requests by ${user} in this range.` }));
          if (range === "all" || !SUBJECT) body.append(emptyState());
          return;
        }
        body.append(el("h2", { text: "Quick stats" }), cards([
          ["Requests", fmtInt(t.requests), "requests", t.requests],
          ["Input tokens", fmtInt(t.input_tokens), "input_tokens", t.input_tokens],
          ["Output tokens", fmtInt(t.output_tokens), "output_tokens", t.output_tokens],
          ["Cache read", fmtInt(t.cache_read_tokens), "cache_read_tokens", t.cache_read_tokens],
          ["Cache write", fmtInt(t.cache_write_tokens), "cache_write_tokens", t.cache_write_tokens],
          ["Reasoning", fmtInt(t.reasoning_tokens), "reasoning_tokens", t.reasoning_tokens],
          ["Active sessions", fmtInt(summary.active_sessions), "active_sessions", summary.active_sessions],
          ["Estimated cost", costText(t), "cost_usd", t.cost_usd === null ? "" : t.cost_usd],
        ]));
        const models = byModel.rows;
        const c1 = chartBox("Tokens by model", `Tokens by model: ${models.map((m) =>
          `${m.model} ${fmtInt(tokensOf(m))}`).join(", ")}`);
        const c2 = chartBox("Activity over time", "Requests and tokens per " + bucket);
        body.append(el("div", { class: "charts" }, c1.box, c2.box));
        drawChart(c1.canvas, { type: "bar", data: { labels: models.map((m) => m.model || "(none)"),
          datasets: TOKEN_KINDS.map(([k, label], i) => ({ label, data: models.map((m) => m[k]),
            backgroundColor: PALETTE[i] })) },
          options: { indexAxis: "y", scales: { x: { stacked: true }, y: { stacked: true } } } });
        const rows = timeline.rows;
        drawChart(c2.canvas, { data: { labels: rows.map((r) => timeLabel(r.time, bucket)),
          datasets: [
            { type: "bar", label: "Tokens", data: rows.map(tokensOf), backgroundColor: PALETTE[0], yAxisID: "y" },
            { type: "line", label: "Requests", data: rows.map((r) => r.requests), borderColor: PALETTE[1],
              backgroundColor: PALETTE[1], yAxisID: "y1" }] },
          options: { scales: { y: { position: "left", beginAtZero: true },
            y1: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } } } } });
        body.append(el("h2", { text: "By model" }), table(usageColumns(["model", "Model"]), models,
          { sortable: true, id: "by-model", key: (r) => r.model }));
      } catch (err) {
        body.replaceChildren();
        fail(body, err);
      }
    }
    await render();
  }

  // --- Logs: sessions, a session, a request ---------------------------------------------

  const STATES = ["complete", "refused", "upstream_error", "client_disconnected", "incomplete"];

  async function logs() {
    clear();
    const list = el("div");
    const more = el("button", { type: "button", class: "more", text: "Load more" });
    const filters = [rangePicker(reload)];
    if (ADMIN) filters.push(textFilter("user", "User", reload));
    filters.push(textFilter("model", "Model", reload), textFilter("provider", "Provider", reload),
      textFilter("status", "Status", reload), selectFilter("state", "State", STATES, reload));
    main.append(el("div", { class: "toolbar", role: "search" }, filters), list, more);
    let cursor = null;
    let rows = [];
    more.hidden = true;
    more.addEventListener("click", () => page());
    function query() {
      return { since: sinceOf(currentRange()), user: params.get("user"), model: params.get("model"),
        provider: params.get("provider"), status: params.get("status"), state: params.get("state"),
        limit: 50, cursor };
    }
    function columns() {
      return [
        ["last", "Last activity", { render: (r) => el("a", { href: `/ui/logs/session/${encodeURIComponent(r.session)}`,
          text: fmtTime(r.last) }) }],
        ...(ADMIN ? [["user", "User"]] : []),
        ["requests", "Requests", { num: true, render: (r) => fmtInt(r.requests) }],
        ["tokens", "Tokens (in / out)", { num: true, render: (r) =>
          `${fmtCompact(r.input_tokens + r.cache_read_tokens + r.cache_write_tokens)} / ${fmtCompact(r.output_tokens)}` }],
        ["cost_usd", "Est. cost", { num: true, render: costText }],
        ["duration_ms", "Duration", { num: true, render: (r) => fmtMs(r.duration_ms) }],
        ["models", "Models", { render: (r) => r.models.join(", ") }],
        ["tools", "Tools", { render: (r) => Object.entries(r.tools).map(([k, n]) => `${k} ×${n}`).join(", ") || "—" }],
        ["states", "States", { render: (r) => el("span", {}, Object.keys(r.states || {}).map((s) => statePill(s))) }],
      ];
    }
    async function page() {
      more.disabled = true;
      try {
        const out = await getJSON("/api/sessions", query());
        rows = rows.concat(out.sessions);
        cursor = out.next;
        list.replaceChildren();
        if (!rows.length) {
          list.append(el("p", { class: "muted", text: cursor
            ? "No match among the latest sessions examined; Load more searches further back."
            : "No sessions match." }));
          if (!params.get("model") && !params.get("state") && !params.get("status")) list.append(emptyState());
        } else {
          list.append(table(columns(), rows, { id: "sessions", key: (r) => r.session,
            caption: "Sessions, newest activity first" }));
        }
        more.hidden = !cursor;
      } catch (err) {
        fail(list, err);
      } finally {
        more.disabled = false;
      }
    }
    async function reload() { cursor = null; rows = []; list.replaceChildren(); await page(); }
    await page();
  }

  async function session() {
    clear();
    const head = el("div");
    const list = el("div");
    const more = el("button", { type: "button", class: "more", text: "Load more", hidden: true });
    main.append(el("p", {}, el("a", { href: "/ui/logs/", text: "← All sessions" })), head, list, more);
    let cursor = null;
    let rows = [];
    async function load() {
      try {
        const out = await getJSON(`/api/sessions/${encodeURIComponent(IDENT)}`, { cursor, limit: 100 });
        const s = out.session;
        head.replaceChildren(el("dl", { class: "fields", id: "session-fields" }, [
          ["Session", s.session], ["User", s.user], ["First", fmtTime(s.first)], ["Last", fmtTime(s.last)],
          ["Requests", fmtInt(s.requests)], ["Input tokens", fmtInt(s.input_tokens)],
          ["Output tokens", fmtInt(s.output_tokens)], ["Cache read", fmtInt(s.cache_read_tokens)],
          ["Cache write", fmtInt(s.cache_write_tokens)], ["Reasoning", fmtInt(s.reasoning_tokens)],
          ["Estimated cost", costText(s)], ["Duration (sum)", fmtMs(s.duration_ms)],
          ["Models", s.models.join(", ")],
          ["Tools", Object.entries(s.tools).map(([k, n]) => `${k} ×${n}`).join(", ") || "—"],
        ].flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])));
        rows = rows.concat(out.requests);
        cursor = out.next;
        list.replaceChildren(el("h2", { text: "Requests" }), table([
          ["time", "Time", { render: (r) => el("a", { href: `/ui/logs/request/${r.id}`, text: fmtTime(r.time) }) }],
          ["model", "Model"], ["api", "API"],
          ["state", "Status", { render: (r) => statePill(r.state, r.status) }],
          ["input_tokens", "Input", { num: true, render: (r) => fmtInt(r.input_tokens) }],
          ["output_tokens", "Output", { num: true, render: (r) => fmtInt(r.output_tokens) }],
          ["cost_usd", "Est. cost", { num: true, render: (r) => r.cost_usd === null ? "no price" : fmtUsd(r.cost_usd) }],
          ["duration_ms", "Duration", { num: true, render: (r) => fmtMs(r.duration_ms) }],
          ["tool_calls", "Tools", { render: (r) => r.tool_calls.map((t) => t.name).join(", ") || "—" }],
        ], rows, { id: "requests", key: (r) => r.id }));
        more.hidden = !cursor;
      } catch (err) {
        fail(head, err);
      }
    }
    more.addEventListener("click", load);
    await load();
  }

  async function request() {
    clear();
    let cap;
    try {
      cap = await getJSON(`/api/captures/${encodeURIComponent(IDENT)}`);
    } catch (err) {
      fail(main, err);
      return;
    }
    main.append(el("p", {}, el("a", { href: `/ui/logs/session/${encodeURIComponent(cap.session)}`,
      text: "← Session " + cap.session })));
    main.append(el("h2", { text: "Summary" }), el("dl", { class: "fields", id: "request-fields" },
      [["Request", `${cap.method} ${cap.path}`], ["Status", `${cap.status} (${cap.state})`],
        ["Error", cap.error || "—"], ["Time", fmtTime(cap.time)], ["User", cap.user],
        ["Device", cap.node || "—"], ["Provider", cap.provider || "—"], ["Model", cap.model || "—"],
        ["API", cap.api], ["Stream", cap.stream ? "yes" : "no"],
        ["Time to first byte", fmtMs(cap.ttfb_ms)], ["Duration", fmtMs(cap.duration_ms)],
        ["Input tokens", fmtInt(cap.input_tokens)], ["Output tokens", fmtInt(cap.output_tokens)],
        ["Cache read", fmtInt(cap.cache_read_tokens)], ["Cache write", fmtInt(cap.cache_write_tokens)],
        ["Reasoning", fmtInt(cap.reasoning_tokens)],
        ["Estimated cost", cap.cost_usd === null ? "no price" : fmtUsd(cap.cost_usd)],
        ["Session", cap.session], ["Capture id", cap.id],
      ].flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])));
    main.append(el("h2", { text: `Tool calls (${cap.tool_calls.length})` }));
    if (!cap.tool_calls.length) main.append(el("p", { class: "muted", text: "None." }));
    for (const t of cap.tool_calls) {
      main.append(el("div", { class: "event" }, el("div", { class: "name", text: t.name }),
        el("pre", { class: "tool-args", text: prettyMaybe(t.arguments) || "(no arguments kept)" })));
    }
    for (const side of ["request", "response"]) {
      main.append(el("h2", { text: `${side === "request" ? "Request" : "Response"} headers` }));
      const hs = cap[`${side}_headers`] || [];
      main.append(hs.length ? table([["0", "Name"], ["1", "Value"]], hs.map((h) => ({ 0: h[0], 1: h[1] })),
        { id: `${side}-headers` }) : el("p", { class: "muted", text: "Not kept." }));
      main.append(el("h2", { text: `${side === "request" ? "Request" : "Response"} body` }));
      main.append(bodyView(side, cap[`${side}_body`]));
    }
  }

  function compactJSON(data) {
    const one = JSON.stringify(data);
    return one.length <= 160 ? one : JSON.stringify(data, null, 2);
  }

  function prettyMaybe(text) {
    if (!text) return text;
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
  }

  function bodyView(side, desc) {
    const box = el("section", { id: `${side}-body`, "aria-label": `${side} body` });
    if (!desc.kept) {
      box.append(el("p", { class: "muted", text: "Not kept (retention), " + fmtInt(desc.size) + " bytes." }));
      return box;
    }
    const info = `${fmtInt(desc.size)} bytes, ${desc.kind}` +
      (desc.content_type ? ` (${desc.content_type})` : "") + (desc.truncated ? ", truncated when captured" : "");
    const tabs = el("div", { class: "tabs", role: "group", "aria-label": "View" });
    const out = el("div", { class: "body-out" });
    const more = el("button", { type: "button", class: "more", text: "Load more", hidden: true });
    box.append(el("p", { class: "muted", text: info }), tabs, out, more);
    const preferred = desc.views.includes("events") ? "events" : desc.views.includes("pretty") ? "pretty" : "raw";
    let view = preferred, offset = 0;
    const buttons = desc.views.map((v) => {
      const b = el("button", { type: "button", text: v, "aria-pressed": v === view ? "true" : "false" });
      b.addEventListener("click", () => {
        view = v; offset = 0;
        for (const x of buttons) x.setAttribute("aria-pressed", x === b ? "true" : "false");
        out.replaceChildren();
        load();
      });
      return b;
    });
    tabs.append(...buttons);
    async function load() {
      more.disabled = true;
      try {
        const pg = await getJSON(`/api/captures/${encodeURIComponent(IDENT)}/${side}_body`, { view, offset });
        if (pg.view === "events") {
          for (const ev of pg.events) {
            const data = ev.decoded !== undefined ? ev.decoded : ev.data;
            out.append(el("div", { class: "event" },
              el("div", { class: "name", text: `#${ev.index}${ev.event ? " " + ev.event : ""}` }),
              el("pre", { text: typeof data === "string" ? data : compactJSON(data) })));
          }
          more.textContent = `Load more events (${fmtInt(pg.total - (pg.next_offset || pg.total))} left)`;
        } else {
          let pre = out.querySelector("pre");
          if (!pre) { pre = el("pre", { class: "body-text" }); out.append(pre); }
          pre.append(document.createTextNode(pg.text));
          if (pg.encoding === "base64") out.prepend(el("p", { class: "muted", text: "Not UTF-8: shown as base64." }));
          more.textContent = `Load more (${fmtInt(pg.total - (pg.next_offset || pg.total))} bytes left)`;
        }
        offset = pg.next_offset;
        more.hidden = pg.next_offset === null;
      } catch (err) {
        fail(out, err);
      } finally {
        more.disabled = false;
      }
    }
    more.addEventListener("click", load);
    load();
    return box;
  }

  // --- Tool Use ------------------------------------------------------------------------------

  async function toolUse() {
    clear();
    const body = el("div");
    const filters = [rangePicker(render)];
    if (ADMIN) filters.push(textFilter("user", "User", render));
    filters.push(textFilter("model", "Model", render), textFilter("tool", "Tool", render));
    main.append(el("div", { class: "toolbar", role: "search" }, filters), body);
    async function render() {
      body.replaceChildren(el("p", { class: "loading", role: "status", text: "Loading…" }));
      const range = currentRange();
      const since = sinceOf(range), bucket = since ? bucketOf(range) : "day";
      const f = { since, user: params.get("user"), model: params.get("model"), tool: params.get("tool") };
      try {
        const [byTool, overTime, sessions] = await Promise.all([
          getJSON("/api/usage", { ...f, by: "tool" }),
          getJSON("/api/usage", { ...f, by: "tool", bucket }),
          getJSON("/api/sessions", { since, user: f.user, model: f.model, tool: f.tool, limit: 50 }),
        ]);
        body.replaceChildren();
        if (!byTool.rows.length) {
          body.append(el("p", { class: "muted", text: "No tool calls in this range." }));
          return;
        }
        const total = byTool.rows.reduce((a, r) => a + r.tool_calls, 0);
        body.append(cards([["Tool calls", fmtInt(total), "tool_calls", total],
          ["Distinct tools", fmtInt(byTool.rows.length), "tools", byTool.rows.length]]));
        const labels = [...new Set(overTime.rows.map((r) => r.time))].sort();
        const tools = byTool.rows.map((r) => r.tool);
        const c = chartBox("Tool calls over time", `Tool calls per ${bucket}, by tool`);
        body.append(el("div", { class: "charts" }, c.box));
        drawChart(c.canvas, { type: "bar", data: { labels: labels.map((t) => timeLabel(t, bucket)),
          datasets: tools.slice(0, 10).map((tool, i) => ({ label: tool, backgroundColor: PALETTE[i % PALETTE.length],
            data: labels.map((t) => (overTime.rows.find((r) => r.time === t && r.tool === tool) || {}).tool_calls || 0) })) },
          options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } } });
        body.append(el("h2", { text: "By tool" }), table([
          ["tool", "Tool"],
          ["tool_calls", "Calls", { num: true, render: (r) => fmtInt(r.tool_calls) }],
          ["requests", "Requests with it", { num: true, render: (r) => fmtInt(r.requests) }],
        ], byTool.rows, { sortable: true, id: "by-tool", key: (r) => r.tool }));
        const withTools = sessions.sessions.filter((s) => s.tool_calls);
        body.append(el("h2", { text: "Per session" }), withTools.length ? table([
          ["last", "Last activity", { render: (r) => el("a", { href: `/ui/logs/session/${encodeURIComponent(r.session)}`, text: fmtTime(r.last) }) }],
          ...(ADMIN ? [["user", "User"]] : []),
          ["tool_calls", "Calls", { num: true, render: (r) => fmtInt(r.tool_calls) }],
          ["tools", "By tool", { render: (r) => Object.entries(r.tools).map(([k, n]) => `${k} ×${n}`).join(", ") }],
        ], withTools, { id: "tool-sessions", key: (r) => r.session }) : el("p", { class: "muted", text: "No sessions with tool calls." }));
      } catch (err) {
        body.replaceChildren();
        fail(body, err);
      }
    }
    await render();
  }

  // --- Adoption -----------------------------------------------------------------------------

  async function adoption() {
    clear();
    const body = el("div");
    main.append(el("div", { class: "toolbar" }, rangePicker(render)), body);
    async function render() {
      body.replaceChildren(el("p", { class: "loading", role: "status", text: "Loading…" }));
      const range = currentRange();
      const since = sinceOf(range), bucket = since ? bucketOf(range) : "day";
      try {
        const [summary, users, active, byModel, overTime] = await Promise.all([
          getJSON("/api/summary", { since }), getJSON("/api/users", { since }),
          getJSON("/api/active-users", { since, bucket }), getJSON("/api/usage", { since, by: "model" }),
          getJSON("/api/usage", { since, bucket })]);
        body.replaceChildren();
        const t = summary.totals;
        if (!t.requests) { body.append(emptyState()); return; }
        body.append(cards([
          ["Active users", fmtInt(summary.active_users), "active_users", summary.active_users],
          ["Requests", fmtInt(t.requests), "requests", t.requests],
          ["Tokens", fmtInt(tokensOf(t)), "tokens", tokensOf(t)],
          ["Reasoning", fmtInt(t.reasoning_tokens), "reasoning_tokens", t.reasoning_tokens],
          ["Estimated cost", costText(t), "cost_usd", t.cost_usd === null ? "" : t.cost_usd]]));
        const c1 = chartBox("Active users", `Active users per ${bucket}`);
        const c2 = chartBox("Tokens and cost over time", `Tokens and estimated cost per ${bucket}`);
        const c3 = chartBox("Model popularity", "Requests by model");
        body.append(el("div", { class: "charts" }, c1.box, c2.box, c3.box));
        drawChart(c1.canvas, { type: "bar", data: { labels: active.rows.map((r) => timeLabel(r.time, bucket)),
          datasets: [{ label: "Active users", data: active.rows.map((r) => r.users), backgroundColor: PALETTE[0] }] },
          options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } } });
        drawChart(c2.canvas, { data: { labels: overTime.rows.map((r) => timeLabel(r.time, bucket)), datasets: [
          { type: "bar", label: "Tokens", data: overTime.rows.map(tokensOf), backgroundColor: PALETTE[0], yAxisID: "y" },
          { type: "line", label: "Est. cost ($)", data: overTime.rows.map((r) => r.cost_usd), borderColor: PALETTE[1],
            backgroundColor: PALETTE[1], yAxisID: "y1" }] },
          options: { scales: { y: { beginAtZero: true }, y1: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } } } } });
        drawChart(c3.canvas, { type: "bar", data: { labels: byModel.rows.map((r) => r.model || "(none)"),
          datasets: [{ label: "Requests", data: byModel.rows.map((r) => r.requests), backgroundColor: PALETTE[2] }] },
          options: { indexAxis: "y" } });
        const csv = el("a", { href: `/api/users?${new URLSearchParams(since ? { since, format: "csv" } : { format: "csv" })}`,
          download: "aperture-users.csv", text: "Download CSV", id: "users-csv" });
        body.append(el("h2", { text: "Users" }), el("p", {}, csv), table([
          ["user", "User", { render: (r) => el("a", { href: `/ui/dashboard/${encodeURIComponent(r.user).replace(/%40/g, "@")}`, text: r.user }) }],
          ...usageColumns(["requests", "Requests", { num: true, render: (r) => fmtInt(r.requests) }]).slice(1),
          ["last_seen", "Last seen", { render: (r) => fmtTime(r.last_seen) }],
        ], users.rows, { sortable: true, id: "users", key: (r) => r.user, caption: "Click a user for their dashboard" }));
        body.append(el("h2", { text: "By model" }), table(usageColumns(["model", "Model"]), byModel.rows,
          { sortable: true, id: "models-usage", key: (r) => r.model }));
      } catch (err) {
        body.replaceChildren();
        fail(body, err);
      }
    }
    await render();
  }

  // --- Models and the Play control ---------------------------------------------------------

  const PROMPT = "Reply with the single word: ok";
  const AUTO = "/v1/projects/_aperture_auto_vertex_project_id_/locations/_aperture_auto_vertex_region_";

  function playRequest(provider, model, flags) {
    const fqn = `${provider}/${model}`;
    const enc = encodeURIComponent(fqn);
    const messages = [{ role: "user", content: PROMPT }];
    const claude = /claude/i.test(model);
    if (flags.anthropic_messages) return ["anthropic_messages", "/v1/messages", { model: fqn, max_tokens: 16, messages }];
    if (flags.openai_chat) return ["openai_chat", "/v1/chat/completions", { model: fqn, messages, max_completion_tokens: 16 }];
    if (flags.openai_responses) return ["openai_responses", "/v1/responses", { model: fqn, input: PROMPT, max_output_tokens: 16 }];
    if (flags.gemini_generate_content) return ["gemini", `/v1beta/models/${enc}:generateContent`,
      { contents: [{ role: "user", parts: [{ text: PROMPT }] }] }];
    if (flags.google_raw_predict && (claude || !flags.google_generate_content)) return ["vertex (Claude)",
      `${AUTO}/publishers/anthropic/models/${enc}:rawPredict`, { anthropic_version: "vertex-2023-10-16", max_tokens: 16, messages }];
    if (flags.google_generate_content) return ["vertex (Gemini)", `${AUTO}/publishers/google/models/${enc}:generateContent`,
      { contents: [{ role: "user", parts: [{ text: PROMPT }] }] }];
    if (flags.bedrock_converse) return ["bedrock converse", `/bedrock/model/${enc}/converse`,
      { messages: [{ role: "user", content: [{ text: PROMPT }] }], inferenceConfig: { maxTokens: 16 } }];
    if (flags.bedrock_model_invoke) return ["bedrock invoke", `/bedrock/model/${enc}/invoke`,
      { anthropic_version: "bedrock-2023-05-31", max_tokens: 16, messages }];
    return null;
  }

  async function play(button, msg, req) {
    const [, path, body] = req;
    button.disabled = true;
    button.textContent = "…";
    button.classList.remove("ok", "bad");
    msg.textContent = "";
    try {
      const resp = await fetch(path, { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify(body) });
      const text = await resp.text();
      let parsed = null;
      try { parsed = JSON.parse(text); } catch (e) { parsed = null; }
      if (!resp.ok) throw new Error(`${resp.status}: ${errorText(parsed, text, resp.status)}`);
      button.textContent = "✓";
      button.classList.add("ok");
      button.setAttribute("aria-label", "Test passed");
      msg.textContent = "ok";
      msg.className = "playmsg ok";
    } catch (err) {
      button.textContent = "✗";
      button.classList.add("bad");
      button.setAttribute("aria-label", "Test failed");
      msg.textContent = err.message;
      msg.className = "playmsg error";
    } finally {
      button.disabled = false;
    }
  }

  async function models() {
    clear();
    let out;
    try {
      out = await getJSON("/api/models");
    } catch (err) {
      fail(main, err);
      return;
    }
    const rows = out.models;
    if (!rows.length) {
      main.append(el("p", { class: "muted", text: "No model is granted to you. Ask an admin for a grant." }));
      return;
    }
    main.append(el("p", { class: "muted", text: "Prices are estimates in US dollars per million tokens. " +
      "Play sends a one-line test request from this browser through aperture, in the model's own API format." }));
    const perM = (v) => "$" + String(Number(v.toFixed(6)));
    main.append(table([
      ["play", "Play", { render: (r) => {
        const req = playRequest(r.provider, r.model, r.compatibility);
        const msg = el("span", { class: "playmsg", role: "status", "aria-live": "polite" });
        const b = el("button", { type: "button", class: "play", text: "▶", disabled: !req,
          "aria-label": `Test ${r.provider}/${r.model}`, title: req ? `POST ${req[1]} (${req[0]})` : "no API format" });
        b.addEventListener("click", () => play(b, msg, req));
        return el("span", {}, b, " ", msg);
      } }],
      ["model", "Model"],
      ["provider", "Provider", { render: (r) => `${r.provider_name} (${r.provider})` }],
      ["formats", "API formats", { render: (r) => r.formats.join(", ") }],
      ["price", "Input / output / cache read / cache write", { render: (r) => {
        const p = r.price;
        if (!p) return el("span", { class: "muted", text: "no price" });
        const text = [p.input, p.output, p.cache_read, p.cache_write].map(perM).join(" / ");
        return el("span", { title: `${p.basis}, ${p.date || "configured"}: ${p.source}` }, text,
          el("br"), el("small", { class: "muted", text: `${p.basis}${p.date ? ", " + p.date : ""}` }));
      } }],
    ], rows, { id: "models", key: (r) => `${r.provider}/${r.model}` }));
  }

  // --- Settings ---------------------------------------------------------------------------

  async function settings() {
    clear();
    let cfg;
    try {
      cfg = await getJSON("/api/config");
    } catch (err) {
      fail(main, err);
      return;
    }
    let hash = cfg.hash;
    const area = el("textarea", { class: "code", id: "config", spellcheck: "false", "aria-label": "Configuration (HuJSON)" });
    area.value = cfg.config;
    const status = el("div", { class: "status", id: "save-status", role: "status", "aria-live": "polite" });
    const save = el("button", { type: "button", class: "primary", id: "save", text: "Save" });
    const reload = el("button", { type: "button", id: "reload", text: "Reload" });
    main.append(el("p", { class: "muted", text: "The configuration as HuJSON (comments and trailing commas allowed). " +
      "Keys are shown masked; a masked key saved back keeps its value." }), area,
    el("div", { class: "toolbar" }, save, reload), status);
    save.addEventListener("click", async () => {
      save.disabled = true;
      status.className = "status";
      status.textContent = "Saving…";
      try {
        const resp = await fetch("/api/config", { method: "PUT", headers: { "content-type": "application/json" },
          body: JSON.stringify({ config: area.value, hash }) });
        const text = await resp.text();
        let body = null;
        try { body = JSON.parse(text); } catch (e) { body = null; }
        if (resp.ok) {
          hash = body.hash;
          area.value = body.config;
          status.className = "status ok";
          status.textContent = "Saved.";
        } else if (resp.status === 409) {
          status.className = "status error";
          status.textContent = "Not saved: the configuration was changed by someone else since you loaded it. " +
            "Reload it (your edits will be lost: copy them first) and save again.";
        } else {
          status.className = "status error";
          status.textContent = "Not saved: " + errorText(body, text, resp.status);
        }
      } catch (err) {
        status.className = "status error";
        status.textContent = "Not saved: " + err.message;
      } finally {
        save.disabled = false;
      }
    });
    reload.addEventListener("click", async () => {
      const fresh = await getJSON("/api/config");
      area.value = fresh.config;
      hash = fresh.hash;
      status.className = "status";
      status.textContent = "Reloaded.";
    });
    if (!cfg.exists) {
      status.textContent = "This configuration is embedded (aperture was started without --config FILE): it cannot be saved from here.";
    }
  }

  const PAGES = { dashboard, logs, session, request, "tool-use": toolUse, adoption, models, settings };
  (PAGES[PAGE] || dashboard)().catch((err) => fail(main, err));
})();
