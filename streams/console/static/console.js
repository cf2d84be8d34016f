// The queue's quick filter: hides rows whose id, entity and detector do not contain the
// typed text. Everything else works without JavaScript.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("quick-filter");
  const table = document.getElementById("queue");
  if (!box || !table) return;
  box.addEventListener("input", () => {
    const q = box.value.trim().toLowerCase();
    for (const row of table.tBodies[0].rows) {
      const text = (row.dataset.search || "").toLowerCase();
      row.hidden = q !== "" && !text.includes(q);
    }
  });
});
