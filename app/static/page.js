// The query page: POST /recommend on this service and show the ranked items, or the API's error.
"use strict";

const KEY_FIELDS = ["year", "genres", "director"];

function fieldText(value) {
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function metaLine(fields) {
  let keys = KEY_FIELDS.filter((key) => fields[key] !== undefined && fields[key] !== null);
  if (keys.length === 0) {
    // Another catalogue: its first few short fields.
    keys = Object.keys(fields).filter((key) => fieldText(fields[key]).length <= 60).slice(0, 3);
  }
  return keys.map((key) => fieldText(fields[key])).join(" · ");
}

function scoreText(value) {
  return value === null || value === undefined ? "–" : Number(value).toPrecision(3);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderItem(item) {
  const li = element("li");
  li.append(element("div", "title", `${item.rank}. ${item.title}`));
  const meta = metaLine(item.fields || {});
  if (meta) li.append(element("div", "meta", meta));
  const ids = element("div", "ids");
  const idLine = element("span", "", "ID ");
  const link = element("a");
  link.href = `items/${encodeURIComponent(item.semantic_id)}`;
  link.append(element("code", "", item.semantic_id));
  idLine.append(link);
  ids.append(idLine);
  ids.append(element("span", "", `score ${scoreText(item.score)}`));
  ids.append(element("span", "", `sources ${item.sources.join(" + ")}`));
  ids.append(element("span", "", `model ${scoreText(item.scores.model)} · lexical ${scoreText(item.scores.lexical)}`));
  li.append(ids);
  return li;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.detail) return `${body.detail} (${body.error || response.status})`;
  } catch (ignored) {
    // Not JSON: fall back to the status line.
  }
  return `HTTP ${response.status} ${response.statusText}`;
}

async function search(event) {
  event.preventDefault();
  const status = document.getElementById("status");
  const error = document.getElementById("error");
  const results = document.getElementById("results");
  const kText = document.getElementById("k").value.trim();
  const body = {
    query: document.getElementById("query").value,
    mode: document.getElementById("mode").value,
  };
  if (kText !== "") body.k = Number(kText);
  error.hidden = true;
  status.textContent = "Searching…";
  const started = performance.now();
  try {
    const response = await fetch("recommend", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const elapsed = Math.round(performance.now() - started);
    if (!response.ok) {
      results.replaceChildren();
      status.textContent = "";
      error.textContent = await errorMessage(response);
      error.hidden = false;
      return;
    }
    const data = await response.json();
    results.replaceChildren(...data.items.map(renderItem));
    status.textContent =
      `${data.items.length} items, ${data.mode} mode, ${elapsed} ms ` +
      `(${Math.round(data.timing_ms)} ms in the service)`;
  } catch (failure) {
    status.textContent = "";
    error.textContent = `The service did not answer: ${failure}`;
    error.hidden = false;
  }
}

document.getElementById("search").addEventListener("submit", search);
