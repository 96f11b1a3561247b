// The profile inspector: looks one user up (GET api/users/<id>) and renders the answer.
// Every piece of user text goes through textContent, never innerHTML: summaries and evidence are
// user-influenced and must not become markup.
"use strict";

const $ = (selector) => document.querySelector(selector);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function say(text, isError) {
  const message = $("#message");
  message.textContent = text;
  message.className = isError ? "error" : "";
}

function badge(text, kind, testid) {
  const b = el("span", text, "badge " + kind);
  b.dataset.testid = testid;
  return b;
}

function renderFacts(view) {
  const s = view.state;
  $("[data-testid=user-id]").textContent = view.user_id;
  $("[data-testid=facts]").textContent =
    `epoch ${s.epoch} · version ${s.version || "none yet"} · partition ${view.partition} · served by ${view.served_by}` +
    (s.last_update_at ? ` · last update ${s.last_update_at}` : "");
  const badges = $("[data-testid=badges]");
  badges.replaceChildren();
  const f = s.failing;
  if (f.parked) {
    badges.append(badge(`parked after ${f.attempts} failed attempts (last: ${f.last_failure}); ` +
      "`prefstream redrive` retries it", "bad", "parked"));
  } else if (f.attempts > 0) {
    badges.append(badge(`failing: ${f.attempts} attempt(s), last ${f.last_failure}` +
      (f.next_retry_at ? `, retry at ${f.next_retry_at}` : "") +
      (f.batch_cap ? `, degraded batches of ${f.batch_cap}` : ""), "warn", "failing"));
  } else {
    badges.append(badge("no failures", "ok", "healthy"));
  }
  if (s.in_flight) badges.append(badge("update in flight", "info", "in-flight"));
  if (view.pending.length) badges.append(badge(`${view.pending.length} pending`, "info", "pending-badge"));
}

function renderSummary(view) {
  const p = view.profile;
  $("[data-testid=summary]").textContent = p ? p.summary : "(no profile in this epoch)";
  $("[data-testid=current-version]").textContent = p
    ? `v${p.version} · ${p.events_applied} events · ${p.model} · ${p.prompt_version} · updated ${p.updated_at}`
    : "";
}

function renderPending(view) {
  const body = $("[data-testid=pending] tbody");
  body.replaceChildren();
  $("[data-testid=pending-count]").textContent = `(${view.pending.length})`;
  for (const e of view.pending) {
    const row = el("tr");
    row.dataset.testid = "pending-event";
    row.append(el("td", e.event_id, "id"), el("td", e.ts), el("td", e.accepted_at));
    const cell = el("td");
    if (!e.triples.length) cell.append(el("span", "no evidence (counts as applied)", "muted"));
    for (const t of e.triples) {
      const triple = el("div", null, "triple");
      triple.append(el("span", t.query, "q"), el("span", t.chosen, "c"), el("span", t.rejected, "r"));
      cell.append(triple);
    }
    row.append(cell);
    body.append(row);
  }
}

function renderDiff(segments) {
  const out = el("p", null, "diff");
  for (const [op, text] of segments) {
    out.append(el(op === "+" ? "ins" : op === "-" ? "del" : "span", text));
  }
  return out;
}

function renderVersions(view) {
  const list = $("[data-testid=versions]");
  list.replaceChildren();
  $("[data-testid=versions-kept]").textContent = `(${view.versions.length} kept of the last ${view.versions_kept})`;
  for (const v of view.versions) {
    const item = el("li", null, "version");
    item.dataset.testid = "version";
    item.dataset.version = v.version;
    const head = el("h3");
    head.append(el("span", `v${v.version}`, "v"),
      el("span", ` applied ${v.applied_at} · ${v.event_ids.length} event(s), ${v.triples} triple(s) · ` +
        `${v.prompt_tokens} → ${v.completion_tokens} tokens · wait ${v.wait_s} s, model ${v.model_s} s, ` +
        `apply ${v.apply_s} s · ${v.backend} ${v.model} · ${v.prompt_version}` +
        (v.attempt > 1 ? ` · attempt ${v.attempt}` : "") + (v.degraded ? " · degraded" : "")));
    item.append(head);
    if (v.diff) {
      item.append(renderDiff(v.diff));
    } else {
      item.append(el("p", "(the version before is no longer kept)", "muted"));
      item.append(el("pre", v.summary, "summary"));
    }
    const events = el("p", null, "events");
    events.append(el("span", "events folded: ", "muted"));
    for (const id of v.event_ids) {
      const chip = el("code", id, "chip");
      chip.dataset.testid = "folded-event";
      events.append(chip);
    }
    item.append(events);
    list.append(item);
  }
}

async function lookUp(userId) {
  say(`Looking up ${userId} …`);
  $("#result").hidden = true;
  let response;
  try {
    response = await fetch(`/inspector/api/users/${encodeURIComponent(userId)}`, { credentials: "same-origin" });
  } catch (err) {
    say(`The worker did not answer: ${err}`, true);
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    say(`${response.status}: ${body.error || response.statusText}`, true);
    return;
  }
  renderFacts(body);
  renderSummary(body);
  renderPending(body);
  renderVersions(body);
  say(`Shown: ${userId}, as stored by its partition's owner.`);
  $("#result").hidden = false;
}

function fromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  return params.get("user");
}

document.addEventListener("DOMContentLoaded", () => {
  $("#lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    const userId = $("#user").value.trim();
    if (!userId) return;
    if (fromHash() !== userId) history.replaceState(null, "", `#user=${encodeURIComponent(userId)}`);
    lookUp(userId);
  });
  const initial = fromHash();
  if (initial) {
    $("#user").value = initial;
    lookUp(initial);
  }
});
