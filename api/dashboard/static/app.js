// Monoduty's own script: the only behaviour htmx does not give (copy buttons, Escape). Loaded as a file
// (the pages' Content-Security-Policy runs no inline script); the pages work without it.
"use strict";

function say(button, text) {
  const status = button.closest("section")?.querySelector(".copied");
  if (status) status.textContent = text;
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = "value" in source ? source.value : source.textContent;
  try {
    await navigator.clipboard.writeText(text);
    say(button, "Copied.");
  } catch (_) {
    // No clipboard access (plain HTTP on another host): select it for Ctrl+C instead.
    const range = document.createRange();
    range.selectNodeContents(source);
    if ("select" in source) source.select();
    else { const selection = getSelection(); selection.removeAllRanges(); selection.addRange(range); }
    say(button, "Selected: press Ctrl+C (or Cmd+C) to copy.");
  }
});

// Escape closes an open confirmation step (details.confirm) and puts focus back on its opener.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  const open = event.target.closest?.("details.confirm[open]") || document.querySelector("details.confirm[open]");
  if (!open) return;
  open.open = false;
  open.querySelector("summary")?.focus();
});
