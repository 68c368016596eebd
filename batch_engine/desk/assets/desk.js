"use strict";
// The desk: a page of cards at a time (memory stays bounded), posters loaded lazily, a video
// player only for the card in focus, decisions saved at once, keyboard first.
const TOKEN = document.querySelector('meta[name="desk-token"]').content;
const PAGE = 48;
const $ = (id) => document.getElementById(id);
const state = { items: [], byId: new Map(), shown: [], page: 0, current: -1, etag: null, undo: [], data: null, armed: false };

async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json", "X-Desk-Token": TOKEN },
                                body: JSON.stringify(body), credentials: "same-origin" });
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(answer.error || r.statusText);
  return answer;
}

async function load() {
  const r = await fetch("/api/items", { headers: state.etag ? { "If-None-Match": state.etag } : {}, credentials: "same-origin" });
  if (r.status === 304 || !r.ok) return;
  state.etag = r.headers.get("ETag");
  const data = await r.json();
  state.data = data;
  state.items = data.items;
  state.byId = new Map(data.items.map((item) => [item.id, item]));
  fillFilters();
  apply(false);
}

function fillFilters() {
  const sets = { "f-state": new Set(), "f-reason": new Set(), "f-model": new Set() };
  for (const item of state.items) {
    sets["f-state"].add(item.state);
    if (item.reason) sets["f-reason"].add(item.reason);
    if (item.model) sets["f-model"].add(item.model);
  }
  for (const [id, values] of Object.entries(sets)) {
    const select = $(id), chosen = select.value, first = select.options[0];
    select.replaceChildren(first, ...[...values].sort().map((v) => new Option(v, v)));
    select.value = chosen;
  }
}

function matches(item) {
  const s = $("f-state").value, d = $("f-decision").value, reason = $("f-reason").value, model = $("f-model").value;
  const q = $("search").value.trim().toLowerCase();
  if (s && item.state !== s) return false;
  if (d === "none" ? item.decision : d && item.decision !== d) return false;
  if (reason && item.reason !== reason) return false;
  if (model && item.model !== model) return false;
  return !q || item.id.toLowerCase().includes(q) || (item.prompt || "").toLowerCase().includes(q)
    || (item.new_prompt || "").toLowerCase().includes(q);
}

function apply(resetPage) {
  const keep = state.shown[state.current]?.id;
  state.shown = state.items.filter(matches);
  const pages = Math.max(1, Math.ceil(state.shown.length / PAGE));
  if (resetPage) state.page = 0;
  state.page = Math.min(state.page, pages - 1);
  const at = keep ? state.shown.findIndex((item) => item.id === keep) : -1;
  state.current = at >= 0 ? at : Math.min(Math.max(state.current, 0), state.shown.length - 1);
  if (at >= 0) state.page = Math.floor(at / PAGE);
  render();
}

function text(tag, cls, value) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  el.textContent = value;
  return el;
}

function card(item, index) {
  const el = document.createElement("article");
  el.className = "card" + (item.decision ? " " + item.decision : "") + (index === state.current ? " current" : "");
  el.dataset.itemId = item.id;
  el.tabIndex = -1;
  const shot = document.createElement("div");
  shot.className = "shot";
  if (item.poster) {
    const img = document.createElement("img");
    img.loading = "lazy"; img.decoding = "async"; img.alt = "poster of " + item.id;
    img.src = "/media/" + encodeURIComponent(item.id) + ".jpg";
    shot.append(img);
  } else {
    shot.textContent = item.video ? "no poster" : item.state;
  }
  shot.addEventListener("click", () => { focusCard(index); play(el, item); });
  const body = document.createElement("div");
  body.className = "body";
  body.append(text("div", "id", item.id));
  const tags = document.createElement("div");
  tags.className = "tags";
  tags.append(text("span", "tag " + item.state, item.state));
  if (item.decision) tags.append(text("span", "tag " + item.decision, item.decision === "remake" ? "make again" : item.decision));
  if (item.reason) tags.append(text("span", "tag failed", item.reason));
  for (const flag of item.flags || []) tags.append(text("span", "tag flag", flag));
  if (item.media) tags.append(text("span", "tag", `${item.media.duration}s ${item.media.width}x${item.media.height}`));
  body.append(tags, text("div", "prompt", item.new_prompt ? "new prompt: " + item.new_prompt : item.prompt));
  if (item.detail) body.append(text("div", "prompt", item.detail));
  const actions = document.createElement("div");
  actions.className = "actions";
  for (const [act, label, on] of [["approve", "Approve", "approved"], ["reject", "Reject", "rejected"], ["remake", "Make again", "remake"]]) {
    const b = text("button", item.decision === on ? "on" : "", label);
    b.type = "button"; b.dataset.act = act; b.setAttribute("aria-pressed", String(item.decision === on));
    b.addEventListener("click", () => { focusCard(index); act === "remake" ? remake(item) : decide(item, act); });
    actions.append(b);
  }
  el.append(shot, body, actions);
  el.addEventListener("focus", () => { if (state.current !== index) { state.current = index; mark(); } });
  return el;
}

function render() {
  const grid = $("grid"), start = state.page * PAGE;
  const page = state.shown.slice(start, start + PAGE);
  grid.replaceChildren(...page.map((item, i) => card(item, start + i)));
  if (!page.length) grid.append(text("div", "empty", state.items.length ? "nothing matches" : "no items yet"));
  $("page").textContent = `${state.page + 1} / ${Math.max(1, Math.ceil(state.shown.length / PAGE))}`;
  counts();
  queue();
  mark();
}

function counts() {
  const d = state.data || { counts: {}, decisions: {} };
  const parts = [["items", state.items.length], ...Object.entries(d.counts), ["approved", d.decisions.approved || 0],
                 ["rejected", d.decisions.rejected || 0], ["make again", d.decisions.remake || 0], ["shown", state.shown.length]];
  $("counts").replaceChildren(...parts.map(([k, v]) => { const s = document.createElement("span"); s.append(text("b", "", String(v)), k); return s; }));
}

function shellQuote(s) { return /^[A-Za-z0-9_.\/-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'"; }

function queue() {
  const queued = state.items.filter((item) => item.decision === "remake");
  const d = state.data || {};
  const known = queued.map((item) => item.credits).filter((c) => typeof c === "number");
  const cost = known.length === queued.length && queued.length ? `, about ${known.reduce((a, b) => a + b, 0)} credits (what they cost last time)` : "";
  $("queued").textContent = queued.length ? `${queued.length} to make again: ${queued.length} new task(s), paid${cost}` : "nothing queued to make again";
  const plain = queued.filter((item) => !item.new_prompt).map((item) => item.id);
  const lines = plain.length ? [`${d.command} redo ${shellQuote(d.folder)} ${plain.map(shellQuote).join(" ")}`] : [];
  for (const item of queued.filter((item) => item.new_prompt)) {
    lines.push(`${d.command} redo ${shellQuote(d.folder)} ${shellQuote(item.id)} --prompt ${shellQuote(item.new_prompt)}`);
  }
  $("command").textContent = lines.join(" && ");
  $("create").hidden = !queued.length || !d.can_make_again || d.remaking;
  $("create").textContent = `Create ${queued.length} task(s)…`;
  $("confirm").hidden = !state.armed || !queued.length;
  $("confirm").textContent = `Confirm: create ${queued.length} paid task(s)`;
  $("remake-status").textContent = d.remaking ? "creating tasks; new videos appear as they arrive" :
    d.last_remake ? (d.last_remake.error ? "make again failed: " + d.last_remake.error : `made again: ${JSON.stringify(d.last_remake.counts || {})}`) : "";
}

function mark() {
  for (const el of document.querySelectorAll(".card.current")) el.classList.remove("current");
  const item = state.shown[state.current];
  const el = item && document.querySelector(`.card[data-item-id="${CSS.escape(item.id)}"]`);
  if (el) el.classList.add("current");
}

function focusCard(index) {
  if (index < 0 || index >= state.shown.length) return;
  stopPlayers();
  state.current = index;
  const page = Math.floor(index / PAGE);
  if (page !== state.page) { state.page = page; render(); }
  mark();
  const el = document.querySelector(`.card[data-item-id="${CSS.escape(state.shown[index].id)}"]`);
  if (el) { el.focus({ preventScroll: true }); el.scrollIntoView({ block: "nearest" }); }
}

function stopPlayers() {
  for (const video of document.querySelectorAll(".shot video")) {
    const item = state.byId.get(video.closest(".card").dataset.itemId);
    const shot = video.parentElement;
    video.pause(); video.removeAttribute("src"); video.load();
    shot.replaceChildren();
    if (item && item.poster) { const img = document.createElement("img"); img.src = "/media/" + encodeURIComponent(item.id) + ".jpg"; img.alt = "poster of " + item.id; shot.append(img); }
  }
}

function play(el, item) {
  if (!item.video) return;
  stopPlayers();
  const video = document.createElement("video");
  video.controls = true; video.autoplay = true; video.muted = true; video.loop = true; video.preload = "auto";
  video.src = "/media/" + encodeURIComponent(item.id) + ".mp4";
  el.querySelector(".shot").replaceChildren(video);
}

async function decide(item, act, prompt) {
  const before = { id: item.id, decision: item.decision, prompt: item.new_prompt };
  const kind = { approve: "approved", reject: "rejected", remake: "remake" }[act];
  const next = item.decision === kind && !prompt ? "clear" : act;  // pressing it again takes it back
  try {
    const answer = await post("/api/decide", { id: item.id, decision: next, prompt: prompt || null });
    state.undo.push(before);
    item.decision = answer.decision; item.new_prompt = answer.decision === "remake" ? (prompt || null) : null;
    state.data.decisions = answer.decisions;
    state.armed = false;
    render();
    focusCard(state.current);
  } catch (e) { $("remake-status").textContent = "not saved: " + e.message; }
}

function remake(item) { decide(item, "remake"); }

function editPrompt(item) {
  $("editing").textContent = item.id;
  $("new-prompt").value = item.new_prompt || item.prompt || "";
  const dialog = $("editor");
  dialog.onclose = () => { if (dialog.returnValue === "ok" && $("new-prompt").value.trim()) decide(item, "remake", $("new-prompt").value.trim()); };
  dialog.showModal();
}

async function undo() {
  const last = state.undo.pop();
  if (!last) return;
  const item = state.byId.get(last.id);
  const act = { approved: "approve", rejected: "reject", remake: "remake" }[last.decision] || "clear";
  const answer = await post("/api/decide", { id: last.id, decision: act, prompt: last.prompt || null });
  if (item) { item.decision = answer.decision; item.new_prompt = last.prompt || null; }
  state.data.decisions = answer.decisions;
  render();
}

document.addEventListener("keydown", (e) => {
  if (e.target.closest("input, textarea, select, dialog") || e.ctrlKey || e.metaKey || e.altKey) {
    if (e.key === "Escape") e.target.blur();
    return;
  }
  const item = state.shown[state.current];
  const keys = {
    j: () => focusCard(state.current + 1), ArrowRight: () => focusCard(state.current + 1),
    k: () => focusCard(state.current - 1), ArrowLeft: () => focusCard(state.current - 1),
    a: () => item && decide(item, "approve"), r: () => item && decide(item, "reject"), m: () => item && remake(item),
    e: () => item && editPrompt(item), u: () => undo(), " ": () => item && play(document.querySelector(".card.current"), item),
    "/": () => $("search").focus(), PageDown: () => focusCard(Math.min((state.page + 1) * PAGE, state.shown.length - 1)),
    PageUp: () => focusCard(Math.max((state.page - 1) * PAGE, 0)),
  };
  if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
});

for (const id of ["f-state", "f-decision", "f-reason", "f-model"]) $(id).addEventListener("change", () => apply(true));
$("search").addEventListener("input", () => apply(true));
$("prev").addEventListener("click", () => focusCard(Math.max((state.page - 1) * PAGE, 0)));
$("next").addEventListener("click", () => focusCard(Math.min((state.page + 1) * PAGE, state.shown.length - 1)));
$("create").addEventListener("click", () => { state.armed = true; queue(); $("confirm").focus(); });
$("confirm").addEventListener("click", async () => {
  state.armed = false;
  try {
    const answer = await post("/api/remake", { confirm: true });
    $("remake-status").textContent = `creating ${answer.creating} task(s)…`;
    state.etag = null;
    await load();
  } catch (e) { $("remake-status").textContent = "not created: " + e.message; }
});

load().then(() => { if (state.shown.length) focusCard(0); });
setInterval(load, 4000);  // new videos as they arrive (an unchanged folder answers 304)
