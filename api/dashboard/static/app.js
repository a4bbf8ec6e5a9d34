// Monoduty's own script: the only behaviour htmx does not give (copy buttons, "select all",
// Escape closing a confirmation). Loaded as a file (the pages' Content-Security-Policy runs no
// inline script); the pages work without it.
"use strict";

function say(button, text) {
  // Said next to the button when it has its own status line, else in its section's.
  const next = button.nextElementSibling;
  const status = next?.classList.contains("copy-status") ? next : button.closest("section")?.querySelector(".copied");
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

// A "select all" box ticks every box named by its data-select-all (the rows of the list).
document.addEventListener("change", (event) => {
  const all = event.target.closest("[data-select-all]");
  if (!all) return;
  for (const box of document.querySelectorAll(`input[type=checkbox][name="${all.dataset.selectAll}"]`)) {
    box.checked = all.checked;
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
