// The viewer's time zone for the pages that show or ask for times (api/dashboard/zones.py): the
// browser's own, kept in a cookie the server reads; every page loads this, so the cookie is there
// from the sign-in page on. A page drawn before the server knew it (in UTC, its [data-zone-source]
// "default") is drawn again once, in the right zone; a zone picked on the page (?tz=) is left alone.
"use strict";

(function () {
  let zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (_) { return; }
  if (!/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) return;
  const had = document.cookie.split("; ").find((c) => c.startsWith("monoduty_tz="));
  document.cookie = `monoduty_tz=${zone}; path=/; max-age=31536000; SameSite=Lax`;
  const shown = document.querySelector("[data-zone-source]");
  if (shown && shown.dataset.zoneSource === "default" && shown.dataset.zone !== zone && !had) {
    location.reload();
  }
})();
