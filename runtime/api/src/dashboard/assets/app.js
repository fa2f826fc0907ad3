// The wdeploy dashboard: a client of the control API the CLI uses, with the session
// cookie instead of a bearer token. Everything an app or a person wrote (names, log
// lines, config vars, descriptions) goes into the page as text, never as HTML.
"use strict";

const main = document.getElementById("main");
// What the open page refreshes and listens to; stopped when the page changes.
let page = { timers: [], events: null, charts: [] };

// ---- the API -------------------------------------------------------------------------

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const init = { method: options.method || "GET", credentials: "same-origin", headers: {} };
  if (init.method !== "GET") {
    init.headers["x-wdeploy-dashboard"] = "1";
  }
  if (options.body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    throw new Unauthorized();
  }
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try { message = JSON.parse(text).message; } catch (_) { /* not JSON */ }
    throw new Error(`${response.status}: ${message}`);
  }
  return text ? JSON.parse(text) : null;
}

// ---- small DOM helpers -----------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function table(headers, rows, attrs = {}) {
  return el("table", attrs,
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows));
}

function section(title, ...children) {
  return el("section", {}, el("h2", { text: title }), ...children);
}

function since(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function formationText(formation) {
  const parts = Object.entries(formation || {}).map(([type, n]) => `${type}=${n}`);
  return parts.length ? parts.join(" ") : "—";
}

function flash(message, kind = "error") {
  const note = el("p", { class: kind, role: "status", text: message });
  main.prepend(note);
  setTimeout(() => note.remove(), 8000);
}

// ---- pages -----------------------------------------------------------------------------

function leavePage() {
  page.timers.forEach(clearInterval);
  if (page.events) page.events.close();
  page.charts.forEach((c) => c.destroy());
  page = { timers: [], events: null, charts: [] };
}

async function route() {
  leavePage();
  const match = location.hash.match(/^#\/apps\/([a-z][a-z0-9-]*)$/);
  try {
    if (match) await appPage(match[1]);
    else await appsPage();
    document.getElementById("logout").hidden = false;
  } catch (e) {
    if (e instanceof Unauthorized) loginPage();
    else main.replaceChildren(el("p", { class: "error", text: String(e.message || e) }));
  }
}

function loginPage() {
  document.getElementById("logout").hidden = true;
  main.replaceChildren(document.getElementById("login-view").content.cloneNode(true));
  document.getElementById("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const error = document.getElementById("login-error");
    try {
      await api("/session", { method: "POST", body: { token: document.getElementById("token").value } });
      route();
    } catch (e) {
      error.textContent = e instanceof Unauthorized ? "That token is not valid on this host." : String(e.message);
      error.hidden = false;
    }
  });
}

async function appsPage() {
  const apps = await api("/apps");
  const rows = apps.map((app) => el("tr", { "data-app": app.name },
    el("td", {}, el("a", { href: `#/apps/${app.name}`, text: app.name })),
    el("td", { text: (app.release ? `v${app.release}` : "no release yet") + (app.maintenance ? " (maintenance)" : "") }),
    el("td", { text: formationText(app.formation) }),
    el("td", {}, el("a", { href: app.web_url, text: app.web_url, target: "_blank", rel: "noopener" }))));
  main.replaceChildren(
    el("h1", { text: "Apps" }),
    apps.length
      ? table(["App", "Release", "Dynos", "URL"], rows, { id: "apps" })
      : el("p", { class: "muted", text: "No apps yet: `wdeploy apps:create` then `wdeploy push`." }));
}

async function appPage(name) {
  const info = await api(`/apps/${name}`);
  const holders = {
    charts: el("div", { class: "charts", id: "charts" }),
    formation: el("div", { id: "formation" }),
    dynos: el("div", { id: "dynos" }),
    releases: el("div", { id: "releases" }),
    config: el("div", { id: "config" }),
    addons: el("div", { id: "addons" }),
    domains: el("div", { id: "domains" }),
    access: el("div", { id: "access" }),
  };
  const maintenance = el("span", { id: "maintenance-state" });
  const toggle = el("button", { id: "maintenance-toggle" });
  const showMaintenance = (on) => {
    maintenance.textContent = on ? "Maintenance mode: on (requests get a 503 page) " : "Maintenance mode: off ";
    toggle.textContent = on ? "Turn off" : "Turn on";
    toggle.dataset.on = on ? "true" : "false";
  };
  showMaintenance(info.maintenance);
  toggle.addEventListener("click", async () => {
    const on = toggle.dataset.on !== "true";
    try {
      const after = await api(`/apps/${name}`, { method: "PATCH", body: { maintenance: on } });
      showMaintenance(after.maintenance);
      flash(`Maintenance mode ${after.maintenance ? "on" : "off"}`, "ok");
    } catch (e) { flash(e.message); }
  });
  // A new name and URL; everything else stays. The page moves to the new name.
  const renameTo = el("input", { id: "rename-to", value: name, "aria-label": "New name", size: "30", maxlength: "30" });
  const rename = el("button", {
    id: "rename", class: "small", text: "Rename",
    on: {
      click: async () => {
        try {
          const after = await api(`/apps/${name}`, { method: "PATCH", body: { name: renameTo.value.trim() } });
          history.replaceState(null, "", `#/apps/${after.name}`);
          await route();
          flash(`Renamed ${name} to ${after.name}`, "ok");
        } catch (e) { flash(e.message); }
      },
    },
  });
  const log = el("pre", { id: "log", class: "log" });
  const source = el("select", { id: "log-source", "aria-label": "Log source" },
    el("option", { value: "", text: "all sources" }),
    el("option", { value: "app", text: "app" }),
    el("option", { value: "router", text: "router" }),
    el("option", { value: "wdeploy", text: "wdeploy (platform)" }));
  source.addEventListener("change", () => tail(name, source.value, log));
  main.replaceChildren(
    el("h1", {}, el("a", { href: "#/", text: "Apps" }), " / ", el("span", { id: "app-name", text: name })),
    el("p", {}, el("a", { href: info.web_url, text: info.web_url, target: "_blank", rel: "noopener" }),
      el("span", { id: "current-release", class: "muted", text: info.release ? `  v${info.release} serving` : "  no release yet" })),
    el("p", {}, maintenance, toggle),
    el("p", {}, "Name: ", renameTo, " ", rename),
    section("Metrics (last hour)", holders.charts),
    el("div", { class: "columns" },
      section("Formation", holders.formation),
      section("Dynos", holders.dynos)),
    section("Releases", holders.releases),
    el("div", { class: "columns" },
      section("Config vars", holders.config),
      section("Add-ons", holders.addons)),
    el("div", { class: "columns" },
      section("Domains", holders.domains),
      section("Access", holders.access)),
    section("Logs", el("p", {}, source), log));

  const refresh = async (what, fn) => {
    try { await fn(name, holders[what]); } catch (e) {
      if (e instanceof Unauthorized) { leavePage(); loginPage(); } else holders[what].replaceChildren(el("p", { class: "error", text: e.message }));
    }
  };
  const all = () => Promise.all([
    refresh("formation", showFormation), refresh("dynos", showDynos), refresh("releases", showReleases),
    refresh("addons", showAddons)]);
  // Domains and access change rarely: read once per visit, not every two seconds.
  await Promise.all([all(), refresh("config", showConfig), refresh("charts", showCharts),
    refresh("domains", showDomains), refresh("access", showAccess)]);
  page.timers.push(setInterval(all, 2000));
  page.timers.push(setInterval(() => refresh("charts", showCharts), 10000));
  tail(name, "", log);
}

async function showFormation(name, holder) {
  if (holder.querySelector("input:focus")) return; // someone is typing a quantity
  const formation = await api(`/apps/${name}/formation`);
  const rows = Object.entries(formation).map(([type, quantity]) => {
    const input = el("input", { type: "number", min: "0", max: "100", value: String(quantity), id: `scale-${type}`, "aria-label": `${type} dynos` });
    const button = el("button", {
      id: `scale-${type}-apply`, text: "Scale",
      on: {
        click: async () => {
          try {
            await api(`/apps/${name}/formation`, { method: "PATCH", body: { [type]: Number(input.value) } });
            flash(`Scaled ${type} to ${input.value}`, "ok");
          } catch (e) { flash(e.message); }
        },
      },
    });
    // Every dyno of the type, on every node (web: the fresh ones serve first).
    const restart = el("button", {
      id: `restart-${type}`, class: "small", text: "Restart",
      on: {
        click: async () => {
          try {
            await api(`/apps/${name}/dynos/${type}`, { method: "DELETE" });
            flash(`Restarted the ${type} dynos`, "ok");
          } catch (e) { flash(e.message); }
        },
      },
    });
    return el("tr", {}, el("td", { text: type }), el("td", {}, input, button), el("td", {}, restart));
  });
  holder.replaceChildren(rows.length ? table(["Process type", "Dynos", ""], rows) : el("p", { class: "muted", text: "No process types yet." }));
}

async function showDynos(name, holder) {
  const dynos = await api(`/apps/${name}/dynos`);
  const rows = dynos.map((d) => el("tr", { "data-dyno": d.name, "data-state": d.state },
    el("td", { text: d.name }),
    el("td", { class: `state ${d.state}`, text: d.state }),
    el("td", { text: since(d.since), title: d.since }),
    el("td", { text: `v${d.release}` }),
    el("td", { text: d.node || "" })));
  holder.replaceChildren(rows.length ? table(["Dyno", "State", "Since", "Release", "Node"], rows, { id: "dyno-table" }) : el("p", { class: "muted", text: "No dynos running." }));
}

async function showReleases(name, holder) {
  const releases = await api(`/apps/${name}/releases?limit=20`);
  const current = document.getElementById("current-release");
  const serving = releases.find((r) => r.current);
  if (current && serving) current.textContent = `  v${serving.version} serving`;
  const output = el("div", { id: "release-output" });
  const rows = releases.map((r) => el("tr", { "data-release": String(r.version) },
    el("td", { text: `v${r.version}` }),
    el("td", { text: r.description }),
    el("td", { text: r.user }),
    el("td", { text: since(r.created_at), title: r.created_at }),
    el("td", { text: r.current ? "current" : r.status }),
    el("td", {}, !r.slug ? null : el("button", {
      "data-output": String(r.version), class: "small", text: r.status === "failed" ? "Why?" : "Output",
      on: { click: () => showOutput(name, r.version, output) },
    }), r.current || r.status !== "succeeded" || !r.slug ? null : el("button", {
      "data-rollback": String(r.version), text: "Rollback",
      on: {
        click: async (ev) => {
          ev.target.disabled = true;
          try {
            await api(`/apps/${name}/rollback`, { method: "POST", body: { version: r.version } });
            flash(`Rolled back to v${r.version}`, "ok");
            showReleases(name, holder);
            // The release brought its config vars back too.
            showConfig(name, document.getElementById("config"));
          } catch (e) { flash(e.message); ev.target.disabled = false; }
        },
      },
    }))));
  holder.replaceChildren(table(["Version", "Description", "By", "When", "Status", ""], rows, { id: "release-table" }), output);
}

// What going live printed for a release (`releases:output`), as text: never markup.
async function showOutput(name, version, holder) {
  try {
    const kept = await api(`/apps/${name}/releases/v${version}/output`);
    holder.replaceChildren(
      el("h3", { text: `v${kept.version}: what going live printed` }),
      el("pre", { class: "log", "data-output-of": String(kept.version), text: kept.output || "(nothing was kept)" }));
  } catch (e) { flash(e.message); }
}

async function showConfig(name, holder) {
  const vars = await api(`/apps/${name}/config-vars`);
  const rows = Object.entries(vars).map(([key, value]) => {
    const shown = el("code", { class: "secret", text: "••••••" });
    const button = el("button", {
      class: "small", text: "Show",
      on: {
        click: () => {
          const hidden = shown.classList.toggle("secret");
          shown.textContent = hidden ? "••••••" : value;
          button.textContent = hidden ? "Show" : "Hide";
        },
      },
    });
    return el("tr", {}, el("td", {}, el("code", { text: key })), el("td", {}, shown, " ", button));
  });
  holder.replaceChildren(rows.length ? table(["Key", "Value"], rows) : el("p", { class: "muted", text: "No config vars." }));
}

async function showAddons(name, holder) {
  const usage = await api(`/apps/${name}/addons`);
  const share = usage.quota_bytes ? Math.min(100, (100 * usage.storage_bytes) / usage.quota_bytes) : 0;
  const queues = usage.queues.map((q) => el("tr", {}, el("td", { text: q.queue }),
    el("td", { text: String(q.ready) }), el("td", { text: String(q.leased) }), el("td", { text: String(q.done) })));
  holder.replaceChildren(
    el("p", { text: `Key-value and queue storage: ${bytes(usage.storage_bytes)} of ${bytes(usage.quota_bytes)} (${share.toFixed(1)} %)` }),
    el("meter", { min: "0", max: "100", value: String(share) }),
    queues.length ? table(["Queue", "Ready", "Leased", "Done (24h)"], queues) : el("p", { class: "muted", text: "No queues." }));
}

async function showDomains(name, holder) {
  const [domains, certs] = await Promise.all([api(`/apps/${name}/domains`), api(`/apps/${name}/certs`)]);
  const certOf = new Map(certs.map((c) => [c.domain, c]));
  const rows = domains.map((d) => {
    const cert = certOf.get(d.hostname);
    const tls = !cert ? "none (HTTP only)"
      : cert.status === "ok" ? `${cert.issuer}, until ${new Date(cert.expires_at).toLocaleDateString()}`
      : cert.error ? `${cert.status}: ${cert.error}` : cert.status;
    return el("tr", { "data-domain": d.hostname }, el("td", { text: d.hostname }), el("td", { text: d.cname }), el("td", { text: tls }));
  });
  holder.replaceChildren(rows.length
    ? table(["Domain", "DNS target", "Certificate"], rows)
    : el("p", { class: "muted", text: "No custom domains: `wdeploy domains:add www.example.com`." }));
}

async function showAccess(name, holder) {
  const people = await api(`/apps/${name}/collaborators`);
  holder.replaceChildren(people.length
    ? el("ul", {}, ...people.map((p) => el("li", { text: p.email })))
    : el("p", { class: "muted", text: "Nobody but the admin." }));
}

async function showCharts(name, holder) {
  if (typeof uPlot === "undefined") return;
  let history;
  try {
    history = await api(`/apps/${name}/metrics`);
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    holder.replaceChildren(el("p", { class: "muted", text: `No metrics: ${e.message}` }));
    return;
  }
  const samples = history.samples || [];
  const times = samples.map((s) => Date.parse(s.at) / 1000);
  const series = [
    { title: "Requests/s", id: "chart-requests", lines: [["requests/s", samples.map((s) => s.requests_per_second)]] },
    { title: "Latency (ms)", id: "chart-latency", lines: [
      ["p50", samples.map((s) => (s.p50_seconds == null ? null : s.p50_seconds * 1000))],
      ["p99", samples.map((s) => (s.p99_seconds == null ? null : s.p99_seconds * 1000))]] },
    { title: "Memory (MiB)", id: "chart-memory", lines: [["memory", samples.map((s) => s.memory_bytes / 1048576)]] },
  ];
  page.charts.forEach((c) => c.destroy());
  page.charts = [];
  holder.replaceChildren();
  if (!samples.length) {
    holder.append(el("p", { class: "muted", text: `No traffic in the last hour yet (a sample every ${history.interval_seconds} s).` }));
  }
  const colors = ["#3b6ea8", "#c0504d"];
  for (const chart of series) {
    const box = el("div", { class: "chart", id: chart.id, "data-samples": String(samples.length) });
    holder.append(box);
    const opts = {
      title: chart.title, width: 320, height: 160,
      series: [{}, ...chart.lines.map(([label], i) => ({ label, stroke: colors[i], width: 1.5, spanGaps: false }))],
      // Always the last hour, however few samples there are yet.
      scales: { x: { time: true, range: () => { const now = Date.now() / 1000; return [now - 3600, now]; } } },
      axes: [{ space: 60 }, { size: 50 }],
      legend: { show: true },
    };
    page.charts.push(new uPlot(opts, [times, ...chart.lines.map(([, data]) => data)], box));
  }
}

function tail(name, source, log) {
  if (page.events) page.events.close();
  log.replaceChildren();
  const query = source ? `?source=${encodeURIComponent(source)}` : "";
  const events = new EventSource(`/apps/${name}/log-events${query}`);
  events.onmessage = (ev) => {
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(el("div", { class: "line", text: ev.data }));
    while (log.childElementCount > 1000) log.firstElementChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  };
  page.events = events;
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("/session", { method: "DELETE" }); } catch (_) { /* gone anyway */ }
  leavePage();
  loginPage();
});
window.addEventListener("hashchange", route);
route();
