// Demo page of the image-classification API: pick an image, POST it to /predict, draw the top-5 as bars.
"use strict";

const fileInput = document.getElementById("file");
const statusLine = document.getElementById("status");
const bars = document.getElementById("bars");
const preview = document.getElementById("preview");

fetch("/health")
  .then((response) => response.json())
  .then((health) => {
    document.getElementById("model").textContent = `model: ${health.model} (${health.backend}) — ${health.description}`;
  })
  .catch(() => {});

function showError(message) {
  statusLine.textContent = message;
  statusLine.className = "error";
  bars.replaceChildren();
}

function showResult(result) {
  statusLine.className = "ok";
  statusLine.textContent =
    `top_class: ${result.top_class}（${(100 * result.confidence).toFixed(1)}%）` +
    ` — ${result.inference_time_ms.toFixed(1)} ms, ${result.model}/${result.backend}`;
  bars.replaceChildren(
    ...result.top_5.map((entry) => {
      const item = document.createElement("li");
      item.dataset.class = entry.class;
      item.dataset.probability = String(entry.probability);
      const label = document.createElement("div");
      label.className = "label";
      const name = document.createElement("span");
      name.textContent = entry.class;
      const value = document.createElement("span");
      value.textContent = `${(100 * entry.probability).toFixed(1)}%`;
      label.append(name, value);
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = `${Math.max(0.5, 100 * entry.probability)}%`;
      track.append(fill);
      item.append(label, track);
      return item;
    }),
  );
}

fileInput.addEventListener("change", async () => {
  const file = fileInput.files[0];
  if (!file) return;
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  statusLine.className = "";
  statusLine.textContent = "送信中…";
  const form = new FormData();
  form.append("file", file);
  try {
    const response = await fetch("/predict", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) {
      showError(`エラー ${response.status}: ${body.error || JSON.stringify(body)}`);
      return;
    }
    showResult(body);
  } catch (error) {
    showError(`通信エラー: ${error}`);
  }
});
