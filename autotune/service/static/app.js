// The dashboard: polls the API every two seconds and draws each job's progress and tuning curve
// (best whole-model latency after each measured batch). No framework: plain DOM and inline SVG.
"use strict";

const REFRESH_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";

function token() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl) {
    sessionStorage.setItem("ember-token", fromUrl);
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("ember-token");
}

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
  const body = await response.json();
  if (!response.ok) throw Object.assign(new Error(body.error || response.statusText), { status: response.status });
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function curve(points) {
  const measured = points.filter((p) => p.best_ms !== null);
  if (measured.length === 0) return el("div", { class: "empty" }, "no curve yet: waiting for every kernel's first measurement");
  const width = 320, height = 150, left = 58, bottom = 22, top = 8, right = 8;
  const maxTrials = Math.max(...measured.map((p) => p.trials), 1);
  const lo = Math.min(...measured.map((p) => p.best_ms)), hi = Math.max(...measured.map((p) => p.best_ms));
  const span = hi - lo || hi * 0.1 || 1;
  const x = (t) => left + (t / maxTrials) * (width - left - right);
  const y = (ms) => top + (1 - (ms - (lo - span * 0.1)) / (span * 1.2)) * (height - top - bottom);
  const svg = el("svg:svg", { class: "curve", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `best latency ${measured.at(-1).best_ms.toFixed(4)} ms after ${measured.at(-1).trials} trials` });
  svg.append(el("svg:line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }));
  svg.append(el("svg:line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }));
  // a step line: the best latency holds until a batch beats it
  let path = "";
  measured.forEach((p, i) => {
    path += i === 0 ? `${x(p.trials)},${y(p.best_ms)}` : ` ${x(p.trials)},${y(measured[i - 1].best_ms)} ${x(p.trials)},${y(p.best_ms)}`;
  });
  svg.append(el("svg:polyline", { class: "line", points: path }));
  for (const p of measured) svg.append(el("svg:circle", { cx: x(p.trials), cy: y(p.best_ms), r: 2.5 }));
  svg.append(el("svg:text", { x: 2, y: y(hi) + 3 }, `${hi.toPrecision(3)} ms`));
  svg.append(el("svg:text", { x: 2, y: y(lo) + 3 }, `${lo.toPrecision(3)} ms`));
  svg.append(el("svg:text", { x: width - right, y: height - 6, "text-anchor": "end" }, `${maxTrials} trials`));
  svg.append(el("svg:text", { x: left, y: height - 6 }, "0"));
  return svg;
}

function card(job) {
  const planned = job.planned || job.trials;
  const share = Math.min(100, (100 * job.measured) / Math.max(planned, 1));
  const target = job.target.mcpu ? `${job.target.kind} ${job.target.mcpu}` : job.target.kind;
  const what = job.kind === "model" ? job.filename : "task list";
  const node = el("section", { class: "job", "data-job": job.id, "data-status": job.status },
    el("h2", {}, `#${job.id} ${what}`, el("span", { class: `status ${job.status}` }, job.status)),
    el("div", { class: "meta" }, `${target} · ${job.trials} trials · ${job.owner}` + (job.rpc_key ? ` · rpc ${job.rpc_key}` : "") +
      (job.worker ? ` · ${job.worker}` : "")),
    el("div", { class: "bar" }, el("span", { style: `width:${share}%` })),
    el("div", { class: "progress" }, el("span", { class: "measured" }, `${job.measured} / ${planned} trials`),
      el("span", {}, job.tasks.length ? `${job.tasks.length} kernels` : "")));
  if (job.error) node.append(el("div", { class: "err" }, job.error));
  node.append(curve(job.curve));
  return node;
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const [stats, list] = await Promise.all([api("/v1/stats"), api("/v1/jobs?limit=24")]);
    const jobs = await Promise.all(list.jobs.map((job) => api(`/v1/jobs/${job.id}`)));
    const counts = Object.entries(stats.jobs).filter(([, n]) => n).map(([s, n]) => `${n} ${s}`).join(", ");
    document.getElementById("stats").replaceChildren(
      el("b", {}, `${stats.records}`), " records · ", el("b", {}, `${stats.workers.length}`), " busy workers · ", counts || "no jobs");
    document.getElementById("jobs").replaceChildren(...(jobs.length ? jobs.map(card) : [el("div", { class: "empty" }, "no jobs yet")]));
    error.hidden = true;
  } catch (err) {
    error.textContent = `${err.message}`;
    error.hidden = false;
    if (err.status === 401) {
      sessionStorage.removeItem("ember-token");
      document.getElementById("login").hidden = false;
      return;
    }
  }
  setTimeout(refresh, REFRESH_MS);
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("ember-token", document.getElementById("token").value);
  document.getElementById("login").hidden = true;
  refresh();
});

if (token()) refresh();
else document.getElementById("login").hidden = false;
