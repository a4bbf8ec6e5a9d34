// Monoduty's own script: the only behaviour htmx does not give (copy buttons, "select all",
// Escape closing a confirmation, the phone's folded navigation). Loaded as a file (the pages' Content-Security-Policy runs no
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

// On a phone (the stylesheet's narrow layout) the navigation folds behind its Menu button, so a
// page starts with its content, not ten links; Inbox and its unread count stay in sight. Escape
// folds it again. On a wide screen the button is not shown and nothing is folded.
const menu = document.querySelector(".menu-toggle");
if (menu) {
  const sidebar = menu.closest(".sidebar");
  const show = (open) => {
    menu.setAttribute("aria-expanded", String(open));
    sidebar.classList.toggle("menu-closed", !open);
  };
  menu.hidden = false;
  show(false);
  menu.addEventListener("click", () => show(menu.getAttribute("aria-expanded") !== "true"));
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || menu.getAttribute("aria-expanded") !== "true" || !menu.offsetParent) return;
    show(false);
    menu.focus();
  });
}
