(function () {
  "use strict";
  const cards = Array.from(document.querySelectorAll(".card"));
  const search = document.getElementById("search");
  const buttons = Array.from(document.querySelectorAll("[data-filter]"));
  const shown = document.getElementById("shown");
  const command = document.getElementById("command");
  const folder = document.body.dataset.folder;
  let filter = "all";

  function apply() {
    const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    let count = 0;
    for (const card of cards) {
      const okState = filter === "all" || card.dataset.state === filter;
      const text = card.dataset.text;
      const okText = words.every((w) => text.includes(w));
      card.classList.toggle("hidden", !(okState && okText));
      if (okState && okText) count += 1;
    }
    shown.textContent = String(count);
  }
  for (const button of buttons) {
    button.addEventListener("click", () => {
      filter = button.dataset.filter;
      for (const b of buttons) b.setAttribute("aria-pressed", String(b === button));
      apply();
    });
  }
  search.addEventListener("input", apply);

  function quote(text) { return /^[A-Za-z0-9._\/-]+$/.test(text) ? text : "'" + text.replace(/'/g, "'\\''") + "'"; }
  function chosen() { return cards.filter((c) => c.querySelector("input.pick:checked")).map((c) => c.dataset.id); }
  function update() {
    const ids = chosen();
    command.textContent = ids.length ? ["batch-engine", "redo", quote(folder)].concat(ids.map(quote)).join(" ")
                                     : "Tick the videos to make again: the command to run appears here.";
    document.getElementById("picked").textContent = String(ids.length);
  }
  document.addEventListener("change", (e) => { if (e.target.classList && e.target.classList.contains("pick")) update(); });
  document.getElementById("copy").addEventListener("click", () => {
    const text = command.textContent;
    if (navigator.clipboard && chosen().length) navigator.clipboard.writeText(text).catch(() => {});
  });
  document.getElementById("export").addEventListener("click", () => {
    const blob = new Blob([chosen().join("\n") + "\n"], { type: "text/plain" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "redo.txt";
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  });

  // A source image that cannot be shown (offline, expired link) gives way to a plain note.
  function unavailable(img) {
    const note = document.createElement("div");
    note.className = "none";
    note.textContent = "image not available";
    img.replaceWith(note);
  }
  document.querySelectorAll(".media img").forEach((img) => {
    if (img.complete && img.naturalWidth === 0) unavailable(img);
    else img.addEventListener("error", () => unavailable(img), { once: true });
  });

  // Videos load their first frame and duration only when their card comes into view.
  const seen = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const video = entry.target;
      if (video.dataset.src && !video.getAttribute("src")) { video.src = video.dataset.src; video.preload = "metadata"; }
      seen.unobserve(video);
    }
  }, { rootMargin: "400px" });
  document.querySelectorAll("video[data-src]").forEach((v) => seen.observe(v));
  apply();
  update();
})();
