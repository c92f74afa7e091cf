// The console's only script (served locally; the CSP allows nothing else).
"use strict";

const BASE = "/console";
const csrf = () => document.querySelector('meta[name="csrf"]').content;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

// Call page: highlight the turn being played; a click on a turn plays from there.
function followPlayer(player) {
  const turns = [...document.querySelectorAll(".transcript li[data-at]")];
  player.addEventListener("timeupdate", () => {
    let current = null;
    for (const li of turns) if (parseFloat(li.dataset.at) <= player.currentTime) current = li;
    for (const li of turns) li.classList.toggle("playing", li === current);
  });
  for (const li of turns) {
    li.addEventListener("click", () => { player.currentTime = parseFloat(li.dataset.at); player.play(); });
  }
}

// Live view: the calls in progress, their transcript as it happens, end / transfer buttons.
function liveView(root) {
  const status = document.getElementById("live-status");
  const calls = new Map();

  function act(callId, action, button) {
    button.disabled = true;
    fetch(`${BASE}/live/${callId}/${action}`, {method: "POST", headers: {"X-CSRF-Token": csrf()}, credentials: "same-origin"})
      .then((r) => { status.textContent = r.ok ? `${action}: sent` : `${action}: refused (${r.status})`; })
      .finally(() => { button.disabled = false; });
  }

  function add(call) {
    const list = el("ol", {class: "transcript"});
    const section = el("section", {class: "live-call", "data-call": call.call_id},
      el("h2", {}, `${call.caller || "unknown"} → ${call.agent || "agent"} (${call.direction})`),
      el("p", {class: "hint"}, `started ${call.started_at.replace("T", " ").slice(0, 19)} UTC`), list);
    for (const [action, label] of [["end", "End call"], ["transfer", "Transfer to a person"]]) {
      const button = el("button", {class: `act-${action}`}, label);
      button.addEventListener("click", () => act(call.call_id, action, button));
      section.append(button);
    }
    calls.set(call.call_id, list);
    root.append(section);
    for (const turn of call.turns) addTurn(call.call_id, turn);
  }

  function addTurn(callId, turn) {
    const list = calls.get(callId);
    if (!list) return;
    list.append(el("li", {class: `turn role-${turn.role}`}, el("b", {}, turn.role), " ", turn.text + (turn.interrupted ? " [cut off]" : "")));
  }

  function count() {
    status.textContent = calls.size ? `${calls.size} call(s) in progress` : "No calls in progress.";
  }

  const source = new EventSource(`${BASE}/live/stream`);
  source.onmessage = (message) => {
    const update = JSON.parse(message.data);
    if (update.type === "snapshot") {
      root.replaceChildren();
      calls.clear();
      update.calls.forEach(add);
    } else if (update.type === "start") {
      add(update.call);
    } else if (update.type === "turn") {
      addTurn(update.call_id, update.turn);
    } else if (update.type === "end") {
      const section = root.querySelector(`[data-call="${update.call_id}"]`);
      if (section) section.remove();
      calls.delete(update.call_id);
    }
    count();
  };
  source.onerror = () => { status.textContent = "Reconnecting…"; };
}

document.addEventListener("DOMContentLoaded", () => {
  const player = document.getElementById("player");
  if (player) followPlayer(player);
  const live = document.getElementById("live");
  if (live) liveView(live);
});
