// durableflow dashboard: confirmations for the controls, and a run page kept up to date from
// the run's events (server-sent events). Everything received is put in as text, never as HTML,
// except the nodes' attempts, which the server renders (and escapes) itself.
"use strict";

const NODE_STATUSES = ["pending", "waiting", "running", "completed", "failed", "cancelled", "skipped"];
const RUN_STATUSES = ["pending", "running", "paused", "completed", "failed", "cancelled", "compensating"];

function confirmControls() {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        return;
      }
      if (!form.querySelector("input[name=confirm]")) {
        const yes = document.createElement("input");
        yes.type = "hidden";
        yes.name = "confirm";
        yes.value = "yes";
        form.appendChild(yes);
      }
    });
  });
}

function badge(status) {
  const span = document.createElement("span");
  span.className = "badge s-" + (RUN_STATUSES.includes(status) || NODE_STATUSES.includes(status) ? status : "other");
  span.textContent = status;
  return span;
}

function short(text, limit) {
  if (!text) return "";
  const flat = String(text).split(/\s+/).join(" ");
  return flat.length <= limit ? flat : flat.slice(0, limit - 1) + "\u2026";
}

function liveRun(root) {
  const nodes = new Map();
  document.querySelectorAll(".graph [data-node]").forEach((el) => nodes.set(el.dataset.node, el));
  const rows = document.getElementById("timeline-rows");
  const attempts = document.getElementById("attempts");
  const liveMark = document.querySelector("#timeline .live");
  let refresh = null;

  function setRunStatus(status) {
    root.dataset.status = status;
    const holder = document.getElementById("run-status");
    holder.replaceChildren(badge(status));
    document.querySelectorAll("form.control[data-when]").forEach((form) => {
      form.hidden = !form.dataset.when.split(" ").includes(status);
    });
  }

  function setNodeStatus(nodeId, status) {
    const el = nodes.get(nodeId);
    if (!el) return;
    [...el.classList].filter((c) => c.startsWith("s-")).forEach((c) => el.classList.remove(c));
    el.classList.add("s-" + status);
  }

  function addRow(e) {
    const tr = document.createElement("tr");
    tr.className = "fresh" + (e.type.startsWith("message.") ? " ev-queue" : "");
    const at = e.at ? e.at.slice(11, 23) : "";
    [String(e.seq), at, e.node_id || "", e.type, short(e.data, 200)].forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 2) td.className = "mono";
      if (i === 4) td.className = "data";
      tr.appendChild(td);
    });
    rows.appendChild(tr);
  }

  function refreshAttempts() {
    clearTimeout(refresh);
    refresh = setTimeout(async () => {
      const open = new Set([...attempts.querySelectorAll("details[open]")].map((d) => d.dataset.node));
      const response = await fetch(attempts.dataset.src, { credentials: "same-origin" });
      if (!response.ok) return;
      attempts.innerHTML = await response.text();   // the server's own, escaped, HTML
      attempts.querySelectorAll("details[data-node]").forEach((d) => {
        if (open.has(d.dataset.node)) d.open = true;
      });
    }, 250);
  }

  const source = new EventSource(root.dataset.events + "?after=" + encodeURIComponent(root.dataset.after));
  source.onopen = () => { if (liveMark) liveMark.hidden = false; };
  source.onmessage = (message) => {
    const e = JSON.parse(message.data);
    root.dataset.after = String(e.seq);
    addRow(e);
    const [kind, word] = e.type.split(".");
    if (kind === "node" && NODE_STATUSES.includes(word)) {
      setNodeStatus(e.node_id, word);
      refreshAttempts();
    } else if (kind === "run" && RUN_STATUSES.includes(word)) {
      setRunStatus(word);
    }
  };
  source.addEventListener("end", () => {
    source.close();
    if (liveMark) liveMark.hidden = true;
    root.dataset.live = "0";
    refreshAttempts();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  confirmControls();
  const root = document.getElementById("run");
  if (root && root.dataset.live === "1" && window.EventSource) liveRun(root);
});
