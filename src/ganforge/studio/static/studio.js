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

function slider(min, max, step, value, attrs = {}) {
  return el("input", { type: "range", min: `${min}`, max: `${max}`, step: `${step}`, value: `${value}`, ...attrs });
}

async function breedPage() {
  const picked = new Map();
  const name = encodeURIComponent(item);
  const controls = await api(`/api/models/${name}/controls`);
  const grid = el("div", { class: "grid", id: "parents" });
  const children = el("div", { class: "grid", id: "children" });
  const mutation = slider(0, 1, 0.05, 0.1, { id: "mutation" });
  const mode = el("select", { id: "mode" }, ...controls.modes.map((m) => el("option", { value: m, text: t(m) })));
  const start = Math.floor(Math.random() * 100000);
  let subject = start;  // the seed the sliders steer: the first parent picked, else the first shown
  const sections = [];
  const toggle = (image, ref) => {
    const key = JSON.stringify(ref);
    if (picked.has(key)) { picked.delete(key); image.classList.remove("picked"); } else { picked.set(key, ref); image.classList.add("picked"); }
    const seeds = [...picked.values()].filter((r) => "seed" in r).map((r) => r.seed);
    const moved = seeds.length > 0 && seeds[0] !== subject;
    if (moved) subject = seeds[0];
    for (const s of sections) if (moved || s.followsPicks) s.redraw();
  };
  for (let k = 0; k < 12; k++) {
    const image = el("img", { src: `/api/models/${name}/image.png?seed=${start + k}`, alt: `seed ${start + k}` });
    image.onclick = () => toggle(image, { seed: start + k });
    grid.append(image);
  }
  const breed = async () => {
    if (picked.size < 2) return show(t("pick_two"), true);
    try {
      const result = await post(`/api/models/${name}/breed`, { parents: [...picked.values()], count: 8, mode: mode.value, mutation: Number(mutation.value), seed: Math.floor(Math.random() * 1e9) });
      children.replaceChildren();
      for (const child of result.children) {
        const image = el("img", { src: child.url, alt: `image ${child.id}`, "data-id": child.id });
        image.onclick = () => toggle(image, { image: child.id });
        const keep = el("button", { text: t("keep"), onclick: () => post(`/api/images/${child.id}/keep`).then(() => { keep.disabled = true; }).catch(fail) });
        children.append(el("div", {}, image, keep, el("a", { href: `/lineage/${child.id}`, text: t("lineage"), class: "lineage" })));
      }
    } catch (err) { fail(err); }
  };
  const truncation = slider(0, 1.5, 0.05, 1, { id: "steer-truncation" });

  // directions (PCA) and truncation: one image, redrawn as a slider moves
  const steerImage = el("img", { class: "big", id: "steered", alt: "" });
  const sliders = el("div", { id: "sliders" });
  const steerBox = el("div", { id: "steer" });
  const steerSection = { redraw: () => {
    const edits = [...sliders.querySelectorAll("input")].map((s) => `${s.dataset.k}:${s.value}`).join(",");
    steerImage.src = controls.directions ? `/api/models/${name}/steer.png?seed=${subject}&edits=${edits}&truncation=${truncation.value}`
      : `/api/models/${name}/image.png?seed=${subject}&truncation=${truncation.value}`;
  } };
  const showSliders = (count) => {
    controls.directions = count;
    sliders.replaceChildren(...[...Array(Math.min(count, 6)).keys()].map((k) => {
      const s = slider(-3, 3, 0.25, 0, { "data-k": k });
      s.onchange = steerSection.redraw;
      return el("label", { class: "row" }, `${t("direction")} ${k + 1}`, s);
    }));
    steerSection.redraw();
  };
  truncation.onchange = () => { for (const s of sections) s.redraw(); };
  steerBox.append(steerImage, el("div", {}, sliders, el("label", { class: "row" }, t("truncation"), truncation)));
  if (controls.directions) showSliders(controls.directions);
  else {
    steerBox.append(el("button", { id: "find", text: t("find_directions"), onclick: (e) => {
      e.target.disabled = true;
      post(`/api/models/${name}/directions`).then((r) => { e.target.remove(); showSliders(r.count); }).catch(fail);
    } }));
    steerSection.redraw();
  }
  sections.push(steerSection);
  const page = [el("h1", { text: `${t("breed")}: ${item}` }), el("p", { class: "muted", text: t("steer_hint") }), steerBox];

  // attributes (a model trained with --attributes): a slider per number, a menu per category
  if (controls.attributes.length) {
    const attrImage = el("img", { class: "big", id: "attribute-image", alt: "" });
    const inputs = controls.attributes.map((a) => {
      const input = a.kind === "continuous"
        ? slider(a.low ?? a.mean - 2 * a.std, a.high ?? a.mean + 2 * a.std, ((a.high ?? a.mean + 2 * a.std) - (a.low ?? a.mean - 2 * a.std)) / 40, a.mean, { "data-attribute": a.name })
        : el("select", { "data-attribute": a.name }, ...a.values.map((v) => el("option", { value: v, text: v })));
      input.onchange = () => attrSection.redraw();
      return el("label", { class: "row" }, a.name, input, el("output", { text: "" }));
    });
    const attrSection = { redraw: () => {
      const values = inputs.map((row) => {
        const i = row.querySelector("[data-attribute]");
        row.querySelector("output").textContent = i.tagName === "SELECT" ? "" : Number(i.value).toPrecision(3);
        return `${i.dataset.attribute}:${i.value}`;
      }).join(",");
      attrImage.src = `/api/models/${name}/attributes.png?seed=${subject}&values=${encodeURIComponent(values)}&truncation=${truncation.value}`;
    } };
    sections.push(attrSection);
    page.push(el("h2", { text: t("attributes") }), el("div", { id: "attributes", class: "steer" }, attrImage, el("div", {}, ...inputs)));
    attrSection.redraw();
  }

  // style mixing (StyleGAN): the first picked parent's styles on one layer group, the second's elsewhere
  if (controls.styles) {
    const layers = el("select", { id: "mix-layers" }, ...Object.keys(controls.groups).map((g) => el("option", { value: g, text: t(g) })));
    const mixed = el("div", { class: "row", id: "mixed" });
    const mixSection = { followsPicks: true, redraw: () => {
      const seeds = [...picked.values()].filter((r) => "seed" in r).map((r) => r.seed);
      if (seeds.length < 2) { mixed.replaceChildren(el("p", { class: "muted", text: t("mix_hint") })); return; }
      const [a, b] = seeds;
      const img = (src, label) => el("figure", {}, el("img", { src, alt: label, class: "thumb" }), el("figcaption", { text: label }));
      mixed.replaceChildren(img(`/api/models/${name}/image.png?seed=${a}&truncation=${truncation.value}`, `${t("seed")} ${a}: ${t(layers.value)}`), el("span", { text: "+" }),
        img(`/api/models/${name}/image.png?seed=${b}&truncation=${truncation.value}`, `${t("seed")} ${b}: ${t("the_rest")}`), el("span", { text: "=" }),
        img(`/api/models/${name}/mix.png?row=${a}&col=${b}&layers=${layers.value}&truncation=${truncation.value}`, t("style_mix")));
    } };
    layers.onchange = mixSection.redraw;
    sections.push(mixSection);
    page.push(el("h2", { text: t("style_mix") }), el("div", { class: "row" }, el("label", {}, t("layers"), layers),
      el("button", { id: "mix", text: t("mix_now"), onclick: mixSection.redraw })), mixed);
    mixSection.redraw();
  }
  main().replaceChildren(...page, el("h2", { text: t("parents") }), grid,
    el("div", { class: "row" }, el("label", {}, t("mutation"), mutation), el("label", {}, t("mode"), mode),
      el("button", { class: "primary", id: "breed", text: t("breed_now"), onclick: breed })),
    el("h2", { text: t("children") }), children);
}

// --- Lineage: the family tree of a bred image, drawn -------------------------------------------------------

async function lineagePage() {
  const { images } = await api(`/api/images/${encodeURIComponent(item)}/lineage`);
  const byId = new Map(images.map((m) => [m.id, m]));
  const depth = new Map();  // generations back from the image asked for
  const visit = (id, d) => {
    if ((depth.get(id) ?? -1) >= d || !byId.has(id)) return;
    depth.set(id, d);
    for (const p of byId.get(id).parents) visit(p, d + 1);
  };
  visit(Number(item), 0);
  const oldest = Math.max(...depth.values());
  const tree = el("div", { class: "tree", id: "tree" });
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "links");
  tree.append(svg);
  const nodes = new Map();
  for (let d = oldest; d >= 0; d--) {
    const row = el("div", { class: "generation", "data-generation": d });
    for (const m of images.filter((m) => depth.get(m.id) === d).sort((a, b) => a.id - b.id)) {
      const r = m.recipe || {};
      const caption = m.kind === "seed" ? `${t("seed")} ${r.seed}` : `#${m.id} · ${t(r.mode || "blend")} · ${t("mutation")} ${r.mutation}`;
      const node = el("a", { href: `/lineage/${m.id}`, class: "node" + (m.id === Number(item) ? " here" : ""), "data-id": m.id },
        el("img", { src: m.url, alt: caption }), el("span", { text: (m.kept ? "★ " : "") + caption }));
      nodes.set(m.id, node);
      row.append(node);
    }
    tree.append(row);
  }
  const draw = () => {
    const box = tree.getBoundingClientRect();
    svg.setAttribute("width", box.width); svg.setAttribute("height", box.height);
    svg.replaceChildren();
    for (const m of images) {
      const child = nodes.get(m.id);
      for (const p of m.parents) {
        const parent = nodes.get(p);
        if (!child || !parent) continue;
        const a = parent.getBoundingClientRect(), b = child.querySelector("img").getBoundingClientRect();  // caption bottom to picture top
        const line = document.createElementNS("http://www.w3.org/2000/svg", "path");
        const [x1, y1, x2, y2] = [a.left + a.width / 2 - box.left, a.bottom - box.top, b.left + b.width / 2 - box.left, b.top - box.top];
        line.setAttribute("d", `M${x1},${y1} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2}`);
        svg.append(line);
      }
    }
    tree.dataset.links = svg.childElementCount;
  };
  main().replaceChildren(el("h1", { text: `${t("lineage")}: #${item}` }), el("p", { class: "muted", text: t("lineage_hint") }), tree);
  requestAnimationFrame(draw);
  window.addEventListener("resize", draw);
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
  const preset = el("select", { id: "preset" }, el("option", { value: "", text: t("defaults") }),
    ...(await api("/api/presets")).presets.map((p) => el("option", { value: p, text: p })));
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
  const train = () => post("/api/jobs", { kind: "train", dataset: datasets.value, kimg: Number(kimg.value), preset: preset.value || null }).then(refresh).catch(fail);
  main().replaceChildren(el("h1", { text: t("make") }),
    el("div", { class: "row" }, el("label", {}, t("drop_zip"), zip), el("label", {}, t("or_folder"), chosenFolder),
      el("label", {}, t("resolution"), resolution), el("button", { class: "primary", id: "upload", text: "↑", onclick: upload })),
    el("div", { class: "row" }, el("label", {}, t("dataset"), datasets), el("button", { id: "inspect", text: t("inspect"), onclick: inspect }),
      el("label", {}, t("kimg"), kimg), el("label", {}, t("preset"), preset),
      el("button", { class: "primary", id: "train", text: t("start_training"), onclick: train })),
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
  series.filter((s) => s.points.some((p) => Number.isFinite(p[key]))).forEach((s, i) => {
    pen.strokeStyle = colours[i % colours.length]; pen.beginPath();
    s.points.filter((p) => Number.isFinite(p[key])).forEach((p, k) => {
      const x = 30 + (canvas.width - 40) * (p.kimg - x0) / ((x1 - x0) || 1);
      const y = canvas.height - 20 - (canvas.height - 30) * (p[key] - y0) / ((y1 - y0) || 1);
      k ? pen.lineTo(x, y) : pen.moveTo(x, y);
    });
    pen.stroke(); pen.fillStyle = pen.strokeStyle;
    pen.textAlign = "right"; pen.fillText(s.name, canvas.width - 8, 14 + 12 * i); pen.textAlign = "left";  // the legend
  });
  const short = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2));
  pen.fillStyle = "#555";  // the axes' ends: values up the left, thousands of images along the bottom
  pen.fillText(short(y1), 2, 14); pen.fillText(short(y0), 2, canvas.height - 22);
  pen.fillText(`${short(x0)} kimg`, 30, canvas.height - 6);
  pen.textAlign = "right"; pen.fillText(`${short(x1)} kimg`, canvas.width - 6, canvas.height - 6); pen.textAlign = "left";
}

async function watchPage() {
  if (!item) {
    const { runs } = await api("/api/runs");
    const canvas = el("canvas", { width: 700, height: 260, id: "compare" });
    main().replaceChildren(el("h1", { text: t("watch") }), el("ul", {}, ...runs.map((r) => el("li", {}, el("a", { href: `/watch/${encodeURIComponent(r.name)}`, text: `${r.name}: ${r.kimg} kimg, ${r.status}` })))), canvas);
    const kidKey = runs.flatMap((r) => r.metrics.flatMap((m) => Object.keys(m))).find((k) => k.startsWith("kid") && !k.endsWith("_std"));
    const measure = kidKey ? kidKey : "loss_G";
    const series = runs.map((r) => ({ name: r.name, points: kidKey ? r.metrics.map((m) => ({ kimg: m.images_seen / 1000, [kidKey]: m[kidKey] })) : r.losses }));
    canvas.dataset.measure = measure;
    canvas.before(el("p", { class: "muted", id: "compare-what", text: `${t("compare")}: ${kidKey ? kidKey + " (" + t("lower_better") + ")" : t("loss_G")}` }));
    plot(canvas, series, measure);
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

const PAGES = { index: indexPage, dream: dreamPage, game: gamePage, breed: breedPage, lineage: lineagePage, translate: translatePage, make: makePage, watch: watchPage };

document.addEventListener("DOMContentLoaded", async () => {
  try {
    await loadWords();
    for (const link of document.querySelectorAll("header a")) if (link.getAttribute("href") === "/" + (parts[0] || "")) link.classList.add("here");
    await PAGES[parts[0] || "index"]();
    document.body.dataset.ready = "yes";
  } catch (err) { fail(err); document.body.dataset.ready = "error"; }
});
