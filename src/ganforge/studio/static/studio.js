// ganforge studio: every page's behaviour. Plain JavaScript, no build step, no third-party code.
"use strict";

let WORDS = {};
const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");
const t = (key) => WORDS[key] || key;
const parts = location.pathname.split("/").filter(Boolean);
const item = decodeURIComponent(parts[1] || "");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error(body && body.error ? body.error : `${response.status}`);
  return body;
}

function post(path, data) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data || {}) });
}

function show(message, isError = false) {
  let box = $("#message");
  if (!box) { box = el("div", { id: "message", role: "status" }); main().prepend(box); }
  box.className = "message" + (isError ? " error" : "");
  box.textContent = message;
}

const fail = (err) => show(err.message, true);

async function loadWords() {
  const chosen = localStorage.getItem("lang");
  const data = await api("/api/words" + (chosen ? `?lang=${chosen}` : ""));
  WORDS = data.words;
  document.documentElement.lang = data.lang;
  document.cookie = `lang=${data.lang}; path=/; samesite=strict`;
  for (const node of document.querySelectorAll("[data-w]")) node.textContent = t(node.dataset.w);
  $("#language").onclick = () => { localStorage.setItem("lang", data.lang === "en" ? "es" : "en"); location.reload(); };
}

// --- Your models -------------------------------------------------------------------------------------

async function indexPage() {
  const { models, owner } = await api("/api/models");
  main().replaceChildren(el("h1", { text: t("models") }));
  if (!models.length) { main().append(el("p", { text: t("no_models") })); return; }
  const cards = el("div", { class: "cards" });
  for (const m of models) {
    const card = el("div", { class: "card", "data-model": m.name });
    const name = encodeURIComponent(m.name);
    if (m.task === "image-to-image") {
      card.append(el("h3", { text: m.name }), el("p", { class: "muted", text: `${m.architecture}` }),
        el("a", { href: `/translate/${name}`, text: t("translate") }));
    } else {
      card.append(el("img", { src: `/api/models/${name}/image.png?seed=0`, alt: m.name }), el("h3", { text: m.name }),
        el("p", { class: "muted", text: `${m.architecture}, ${m.resolution} px, ${(m.images_seen / 1000).toFixed(1)} kimg` }),
        el("div", { class: "row" }, el("a", { href: `/dream/${name}`, text: t("dream") }),
          el("a", { href: `/game/${name}`, text: t("game") }), el("a", { href: `/breed/${name}`, text: t("breed") })));
    }
    if (owner) {
      for (const key of ["shareable", "show_real"]) {
        const box = el("input", { type: "checkbox", "data-setting": key, checked: m[key] });
        box.onchange = () => post(`/api/models/${name}/settings`, { [key]: box.checked }).catch(fail);
        card.append(el("label", { class: "row" }, box, t(key)));
      }
    }
    cards.append(card);
  }
  main().append(cards);
}

// --- This X does not exist -----------------------------------------------------------------------------

async function dreamPage() {
  const params = new URLSearchParams(location.search);
  let seed = params.get("seed");
  if (seed === null) {
    seed = (await api(`/api/models/${encodeURIComponent(item)}/random`)).seed;
    history.replaceState(null, "", `/dream/${encodeURIComponent(item)}?seed=${seed}`);
  }
  const truncation = params.get("truncation") || "1";
  const src = `/api/models/${encodeURIComponent(item)}/image.png?seed=${seed}&truncation=${truncation}`;
  const image = el("img", { class: "big", id: "dream", src, alt: `${item}, seed ${seed}` });
  image.onerror = () => api(src).catch(fail);
  const slider = el("input", { type: "range", min: "0", max: "1.5", step: "0.05", value: truncation, id: "truncation" });
  slider.onchange = () => { location.href = `/dream/${encodeURIComponent(item)}?seed=${seed}&truncation=${slider.value}`; };
  main().replaceChildren(el("h1", { text: `${t("dream")}: ${item}` }), image,
    el("div", { class: "row" },
      el("span", { id: "seed", text: `${t("seed")} ${seed}` }),
      el("a", { id: "permalink", href: location.pathname + location.search, text: t("permalink") }),
      el("a", { id: "download", href: src + "&download=true", download: `${item}-seed${seed}.png`, text: t("download") }),
      el("button", { class: "primary", id: "another", text: t("new_image"), onclick: () => { location.href = `/dream/${encodeURIComponent(item)}`; } })),
    el("label", { class: "row" }, t("truncation"), slider));
}

// --- Which is real? ------------------------------------------------------------------------------------

async function gamePage() {
  main().replaceChildren(el("h1", { text: t("game") }), el("p", { text: t("pick_real") }),
    el("div", { class: "pair", id: "pair" }), el("p", { id: "stats", class: "muted" }));
  await nextRound();
}

function describeStats(s) {
  if (!s.answers) return "";
  const [low, high] = s.interval95.map((x) => (100 * x).toFixed(0));
  return `${t("fooling_rate")}: ${(100 * s.fooling_rate).toFixed(0)} % (95 %: ${low}–${high} %), ${s.answers} ${t("answers")}`;
}

async function nextRound() {
  let round;
  try { round = await post(`/api/game/${encodeURIComponent(item)}/round`); } catch (err) { return fail(err); }
  const pair = $("#pair");
  pair.replaceChildren();
  const started = performance.now();
  for (const side of ["left", "right"]) {
    const image = el("img", { src: round[side], alt: side, "data-side": side });
    image.onclick = async () => {
      if (pair.dataset.answered) return;
      pair.dataset.answered = "yes";
      try {
        const result = await post(`/api/game/rounds/${round.round}/answer`, { picked: side, seconds: (performance.now() - started) / 1000 });
        for (const img of pair.querySelectorAll("img")) img.classList.add(img.dataset.side === result.real ? "real" : "fake");
        show(result.correct ? t("it_was_real") : t("it_was_fake"));
        $("#stats").textContent = describeStats(result.stats);
        pair.append(el("button", { class: "primary", id: "next", text: t("next_round"), onclick: () => { delete pair.dataset.answered; nextRound(); } }));
      } catch (err) { fail(err); }
    };
    pair.append(image);
  }
}

// --- Breed and steer -----------------------------------------------------------------------------------

async function breedPage() {
  const picked = new Map();
  const name = encodeURIComponent(item);
  const grid = el("div", { class: "grid", id: "parents" });
  const children = el("div", { class: "grid", id: "children" });
  const mutation = el("input", { type: "range", min: "0", max: "1", step: "0.05", value: "0.1", id: "mutation" });
  const start = Math.floor(Math.random() * 100000);
  const toggle = (image, ref) => {
    const key = JSON.stringify(ref);
    if (picked.has(key)) { picked.delete(key); image.classList.remove("picked"); } else { picked.set(key, ref); image.classList.add("picked"); }
  };
  for (let k = 0; k < 12; k++) {
    const image = el("img", { src: `/api/models/${name}/image.png?seed=${start + k}`, alt: `seed ${start + k}` });
    image.onclick = () => toggle(image, { seed: start + k });
    grid.append(image);
  }
  const breed = async () => {
    if (picked.size < 2) return show(t("parents") + ": 2+", true);
    try {
      const result = await post(`/api/models/${name}/breed`, { parents: [...picked.values()], count: 8, mutation: Number(mutation.value), seed: Math.floor(Math.random() * 1e9) });
      children.replaceChildren();
      for (const child of result.children) {
        const image = el("img", { src: child.url, alt: `image ${child.id}`, "data-id": child.id });
        image.onclick = () => toggle(image, { image: child.id });
        const keep = el("button", { text: t("keep"), onclick: () => post(`/api/images/${child.id}/keep`).then(() => { keep.disabled = true; }).catch(fail) });
        children.append(el("div", {}, image, keep, el("a", { href: `/api/images/${child.id}/lineage`, text: t("lineage") })));
      }
    } catch (err) { fail(err); }
  };
  const steerImage = el("img", { class: "big", id: "steered", alt: "" });
  const sliders = el("div", { id: "sliders" });
  const steerBox = el("div", { id: "steer" });
  const steerSeed = start;
  const redraw = () => {
    const edits = [...sliders.querySelectorAll("input")].map((s) => `${s.dataset.k}:${s.value}`).join(",");
    steerImage.src = `/api/models/${name}/steer.png?seed=${steerSeed}&edits=${edits}`;
  };
  const showSliders = (count) => {
    sliders.replaceChildren(...[...Array(Math.min(count, 6)).keys()].map((k) => {
      const s = el("input", { type: "range", min: "-3", max: "3", step: "0.25", value: "0", "data-k": k });
      s.onchange = redraw;
      return el("label", { class: "row" }, `${k + 1}`, s);
    }));
    steerBox.replaceChildren(steerImage, sliders);
    redraw();
  };
  api(`/api/models/${name}/directions`).then((d) => {
    if (d.found) showSliders(d.count);
    else steerBox.replaceChildren(el("button", { id: "find", text: "PCA", onclick: () => post(`/api/models/${name}/directions`).then((r) => showSliders(r.count)).catch(fail) }));
  }).catch(() => {});
  main().replaceChildren(el("h1", { text: `${t("breed")}: ${item}` }), steerBox, el("h2", { text: t("parents") }), grid,
    el("div", { class: "row" }, el("label", {}, t("mutation"), mutation), el("button", { class: "primary", id: "breed", text: t("breed_now"), onclick: breed })),
    el("h2", { text: t("children") }), children);
}

// --- Translate -------------------------------------------------------------------------------------------

async function translatePage() {
  const name = encodeURIComponent(item);
  const file = el("input", { type: "file", accept: "image/*", id: "file" });
  const canvas = el("canvas", { width: 256, height: 256, id: "canvas" });
  const out = el("img", { class: "big", id: "result", alt: "" });
  const pen = canvas.getContext("2d");
  pen.fillStyle = "#fff"; pen.fillRect(0, 0, 256, 256); pen.lineWidth = 4; pen.lineCap = "round";
  // a label-map model (GauGAN's canvas): paint with its label colours, a broad brush, on its first label
  const { models } = await api("/api/models");
  const me = models.find((m) => m.name === item) || {};
  const palette = el("div", { class: "row", id: "palette" });
  if (me.input && me.input.kind === "labels" && me.input.colours) {
    const css = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
    pen.fillStyle = css(me.input.colours[0]); pen.fillRect(0, 0, 256, 256); pen.lineWidth = 18;
    me.input.colours.forEach((c, k) => {
      const swatch = el("button", { type: "button", "data-label": k, text: `${k}` });
      swatch.style.background = css(c);
      swatch.onclick = () => { pen.strokeStyle = css(c); };
      palette.append(swatch);
    });
    pen.strokeStyle = css(me.input.colours[Math.min(1, me.input.colours.length - 1)]);
  }
  let drawing = false;
  canvas.onpointerdown = (e) => { drawing = true; pen.beginPath(); pen.moveTo(e.offsetX, e.offsetY); };
  canvas.onpointermove = (e) => { if (drawing) { pen.lineTo(e.offsetX, e.offsetY); pen.stroke(); } };
  canvas.onpointerup = () => { drawing = false; };
  const send = async (blob) => {
    const form = new FormData();
    form.append("file", blob, "input.png");
    const response = await fetch(`/api/models/${name}/translate`, { method: "POST", body: form });
    if (!response.ok) return fail(new Error((await response.json()).error));
    out.src = URL.createObjectURL(await response.blob());
  };
  main().replaceChildren(el("h1", { text: `${t("translate")}: ${item}` }),
    el("div", { class: "row" }, el("label", {}, t("upload"), file), el("span", { text: t("draw") })), palette, canvas,
    el("div", { class: "row" }, el("button", { class: "primary", id: "run", text: t("run_translation"), onclick: () => {
      if (file.files.length) send(file.files[0]); else canvas.toBlob(send);
    } })), out);
}

// --- Make ------------------------------------------------------------------------------------------------

async function makePage() {
  const zip = el("input", { type: "file", accept: ".zip", id: "zip" });
  const chosenFolder = el("input", { type: "file", id: "folder", webkitdirectory: true, multiple: true });
  const resolution = el("select", { id: "resolution" }, ...[16, 32, 64, 128, 256].map((r) => el("option", { value: r, text: `${r} px`, selected: r === 64 })));
  const datasets = el("select", { id: "dataset" });
  const kimg = el("input", { type: "number", min: "1", value: "100", id: "kimg" });
  const report = el("div", { id: "report" });
  const jobs = el("table", { id: "jobs" });
  const refresh = async () => {
    const names = (await api("/api/datasets")).datasets;
    datasets.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    const list = (await api("/api/jobs")).jobs;
    jobs.replaceChildren(el("tr", {}, el("th", { text: "#" }), el("th", { text: t("status") }), el("th", { text: "" })),
      ...list.map((j) => el("tr", { "data-job": j.id, "data-status": j.status }, el("td", { text: `${j.id} ${j.kind} ${j.run || j.args.name || ""}` }),
        el("td", { text: j.status }),
        el("td", {}, ["queued", "running"].includes(j.status) ? el("button", { text: t("stop"), onclick: () => post(`/api/jobs/${j.id}/stop`).then(refresh).catch(fail) })
          : j.kind === "train" && j.run && j.status === "stopped" ? el("button", { text: t("resume"), onclick: () => post(`/api/jobs/${j.id}/resume`).then(refresh).catch(fail) }) : "",
          j.run ? el("a", { href: `/watch/${encodeURIComponent(j.run)}`, text: t("watch") }) : ""))));
  };
  const upload = async () => {
    const files = zip.files.length ? [zip.files[0]] : [...chosenFolder.files];
    if (!files.length) return;
    const form = new FormData();
    for (const f of files) form.append("file", f, f.webkitRelativePath || f.name);
    try { await api(`/api/datasets?resolution=${resolution.value}`, { method: "POST", body: form }); await refresh(); } catch (err) { fail(err); }
  };
  const inspect = async () => {
    try {
      const d = await api(`/api/datasets/${encodeURIComponent(datasets.value)}`);
      report.replaceChildren(el("p", { text: `${d.count} images, ${d.resolution} px; skipped ${d.skipped_count}` }),
        el("ul", {}, ...d.skipped.slice(0, 20).map((s) => el("li", { text: `${s.file}: ${s.reason}` }))),
        el("img", { src: d.contact_sheet, class: "big", alt: "contact sheet" }));
    } catch (err) { fail(err); }
  };
  const train = () => post("/api/jobs", { kind: "train", dataset: datasets.value, kimg: Number(kimg.value) }).then(refresh).catch(fail);
  main().replaceChildren(el("h1", { text: t("make") }),
    el("div", { class: "row" }, el("label", {}, t("drop_zip"), zip), el("label", {}, t("or_folder"), chosenFolder),
      el("label", {}, t("resolution"), resolution), el("button", { class: "primary", id: "upload", text: "↑", onclick: upload })),
    el("div", { class: "row" }, el("label", {}, t("dataset"), datasets), el("button", { id: "inspect", text: t("inspect"), onclick: inspect }),
      el("label", {}, t("kimg"), kimg), el("button", { class: "primary", id: "train", text: t("start_training"), onclick: train })),
    report, jobs);
  await refresh();
  setInterval(() => refresh().catch(() => {}), 3000);
}

// --- Watch -----------------------------------------------------------------------------------------------

function plot(canvas, series, key) {
  const pen = canvas.getContext("2d");
  pen.clearRect(0, 0, canvas.width, canvas.height);
  const points = series.flatMap((s) => s.points.filter((p) => Number.isFinite(p[key])));
  if (!points.length) return;
  const xs = points.map((p) => p.kimg), ys = points.map((p) => p[key]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs) || 1, Math.min(...ys), Math.max(...ys)];
  const colours = ["#7a3cff", "#1c7c4a", "#b3261e", "#d98e04", "#0067a3"];
  series.forEach((s, i) => {
    pen.strokeStyle = colours[i % colours.length]; pen.beginPath();
    s.points.filter((p) => Number.isFinite(p[key])).forEach((p, k) => {
      const x = 30 + (canvas.width - 40) * (p.kimg - x0) / ((x1 - x0) || 1);
      const y = canvas.height - 20 - (canvas.height - 30) * (p[key] - y0) / ((y1 - y0) || 1);
      k ? pen.lineTo(x, y) : pen.moveTo(x, y);
    });
    pen.stroke(); pen.fillStyle = pen.strokeStyle; pen.fillText(s.name, 34, 14 + 12 * i);
  });
}

async function watchPage() {
  if (!item) {
    const { runs } = await api("/api/runs");
    const canvas = el("canvas", { width: 700, height: 260, id: "compare" });
    main().replaceChildren(el("h1", { text: t("watch") }), el("ul", {}, ...runs.map((r) => el("li", {}, el("a", { href: `/watch/${encodeURIComponent(r.name)}`, text: `${r.name}: ${r.kimg} kimg, ${r.status}` })))), canvas);
    plot(canvas, runs.map((r) => ({ name: r.name, points: r.losses })), "loss_G");
    return;
  }
  const grid = el("img", { class: "big", id: "grid", alt: "" });
  const canvas = el("canvas", { width: 700, height: 220, id: "losses" });
  const health = el("div", { class: "message", id: "health" });
  const progress = el("p", { id: "progress" });
  main().replaceChildren(el("h1", { text: `${t("watch")}: ${item}` }), progress, grid, el("h2", { text: t("losses") }), canvas, el("h2", { text: t("health") }), health,
    el("img", { src: `/api/runs/${encodeURIComponent(item)}/progress.gif`, class: "big", alt: "", id: "animation" }));
  const events = new EventSource(`/api/runs/${encodeURIComponent(item)}/events`);
  events.onmessage = (e) => {
    const s = JSON.parse(e.data);
    const last = s.losses[s.losses.length - 1] || {};
    const kid = s.metrics.length ? Object.entries(s.metrics[s.metrics.length - 1]).filter(([k]) => k.startsWith("kid")).map(([k, v]) => `${k} ${Number(v).toFixed(4)}`).join(" ") : "";
    const number = (x) => (Number.isFinite(x) ? x.toFixed(2) : "–");
    progress.textContent = `${Number(s.kimg).toFixed(1)} kimg · ${s.images_per_second ? s.images_per_second.toFixed(0) + " img/s" : ""} · r_t ${number(last.r_t)} · p ${number(last.p)} ${kid}`;
    if (s.grid) grid.src = `/api/runs/${encodeURIComponent(item)}/grid.png?${s.grid}`;
    plot(canvas, [{ name: "D", points: s.losses.map((r) => ({ kimg: r.kimg, v: r.loss_D })) }, { name: "G", points: s.losses.map((r) => ({ kimg: r.kimg, v: r.loss_G })) }], "v");
    health.textContent = s.health ? `${s.health.summary} ${s.health.findings.map((f) => f.title + ": " + f.detail).join(" ")}` : "…";
  };
}

const PAGES = { index: indexPage, dream: dreamPage, game: gamePage, breed: breedPage, translate: translatePage, make: makePage, watch: watchPage };

document.addEventListener("DOMContentLoaded", async () => {
  try {
    await loadWords();
    for (const link of document.querySelectorAll("header a")) if (link.getAttribute("href") === "/" + (parts[0] || "")) link.classList.add("here");
    await PAGES[parts[0] || "index"]();
    document.body.dataset.ready = "yes";
  } catch (err) { fail(err); document.body.dataset.ready = "error"; }
});
