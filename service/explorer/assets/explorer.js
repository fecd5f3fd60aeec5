// The latent explorer. Everything it shows comes from the service's public API on this same
// server (GET /model, POST /encode, /score, /decode, /sample, /interpolate): the image shape,
// the latent size and the ranking of dimensions included, so it serves any model.

const KEY_STORAGE = "vae-explorer.api-key";
const SEED = 0; // of /encode's and /score's draws: the same drawing always gives the same answers
const TOP_DIMS = 6; // sliders on this many dimensions, ranked by KL per dimension
const Z_RANGE = 3; // sliders and bars span [-Z_RANGE, Z_RANGE]
const SAMPLE_COUNT = 16;
const MAX_BUSY_TRIES = 3; // a 503 is retried after its Retry-After this many times, then shown
const FRAME_MS = 120; // of the interpolation's animation
const BRUSH = 0.085; // brush width, as a share of the drawing's width (MNIST strokes are thick)
// MNIST's digits: each fitted in a 20x20 box of the 28x28 image, centred on its centre of mass.
const MNIST_SIDE = 28;
const MNIST_BOX = 20;
const GAP = 2; // pixels between the images of a grid or strip

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Status: one visible line; each part of the page ("owner") clears only its own messages.

const statusEl = $("status");
let statusOwner = null;

function showStatus(kind, text, owner = null) {
  statusEl.dataset.kind = kind;
  statusEl.textContent = text;
  statusOwner = owner;
}

function clearStatus(owner) {
  if (statusOwner === owner) showStatus("ok", "Ready.");
}

/** A failure to show the person as it is: the server's own message, why no answer came, or
 * what is missing before a request can be made. */
class Notice extends Error {
  constructor(message) {
    super(message);
    this.name = "Notice";
  }
}

function report(owner, error) {
  if (error instanceof Notice) {
    showStatus("error", error.message, owner);
  } else {
    // A bug in this page, not a failed request: say so, and leave the details in the console.
    showStatus("error", `Something went wrong in the page: ${error?.message ?? error}`, owner);
    console.error(error);
  }
}

window.addEventListener("unhandledrejection", (event) => report(null, event.reason));
window.addEventListener("error", (event) => report(null, event.error ?? event.message));

// ---------------------------------------------------------------------------------------------
// The API: JSON in and out, the API key when the server asks for it, Retry-After on 503.

let apiKey = sessionStorage.getItem(KEY_STORAGE);
let keyRequest = null; // one dialog, shared by every request that was refused meanwhile

async function call(path, body, owner) {
  for (let busyTries = 0; ; ) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (apiKey) headers["X-API-Key"] = apiKey;
    let response;
    try {
      response = await fetch(path, {
        method: body === undefined ? "GET" : "POST",
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new Notice(`Cannot reach the server (${path}): ${error.message}`);
    }
    if (response.ok) {
      return response.json().catch(() => {
        throw new Notice(`${path}: the server's answer is not JSON.`);
      });
    }
    const message = await errorMessage(response);
    if (response.status === 401) {
      await askForKey(message, owner);
      continue;
    }
    if (response.status === 503 && busyTries < MAX_BUSY_TRIES) {
      busyTries += 1;
      await waitBusy(retryAfterSeconds(response), path, busyTries, owner);
      continue;
    }
    if (response.status === 503) {
      throw new Notice(`Server busy (${path}): ${message}. Gave up after ${busyTries} retries.`);
    }
    if (response.status === 504) throw new Notice(`Timed out (${path}): ${message}`);
    throw new Notice(`${path} failed (HTTP ${response.status}): ${message}`);
  }
}

/** The message of the service's error body `{"error": {"code", "message", "field"}}`. */
async function errorMessage(response) {
  const text = await response.text().catch(() => "");
  try {
    const { message, field } = JSON.parse(text).error;
    return field && !message.startsWith(field) ? `${field}: ${message}` : message;
  } catch {
    return text.slice(0, 200) || response.statusText || "no message";
  }
}

function retryAfterSeconds(response) {
  const seconds = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  return Number.isFinite(seconds) && seconds >= 0 ? Math.min(seconds, 60) : 1;
}

async function waitBusy(seconds, path, attempt, owner) {
  for (let left = seconds; left > 0; left -= 1) {
    showStatus(
      "busy",
      `Server busy: retrying ${path} in ${left} s (retry ${attempt} of ${MAX_BUSY_TRIES}).`,
      owner,
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  showStatus("busy", `Server busy: retrying ${path} now.`, owner);
}

const keyDialog = $("key-dialog");
const keyForm = $("key-form");
const keyInput = $("api-key");

function askForKey(reason, owner) {
  keyRequest ??= new Promise((resolve, reject) => {
    const done = () => {
      keyForm.removeEventListener("submit", onSubmit);
      keyDialog.removeEventListener("cancel", onCancel);
      $("key-cancel").removeEventListener("click", onCancel);
      keyDialog.close();
      keyRequest = null;
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const value = keyInput.value.trim();
      if (!value) return;
      apiKey = value;
      sessionStorage.setItem(KEY_STORAGE, value);
      done();
      showStatus("info", "Trying the API key...", owner);
      resolve();
    };
    const onCancel = (event) => {
      event.preventDefault();
      done();
      reject(new Notice("This server needs an API key: reload the page to enter it."));
    };
    keyForm.addEventListener("submit", onSubmit);
    keyDialog.addEventListener("cancel", onCancel);
    $("key-cancel").addEventListener("click", onCancel);
    $("key-reason").textContent = apiKey
      ? `The server refused the key: ${reason}`
      : `This server needs an API key (${reason}).`;
    keyInput.value = "";
    showStatus("info", "Waiting for the API key.", owner);
    keyDialog.showModal();
  });
  return keyRequest;
}

let working = 0; // parts of the page waiting for the server (tests wait for 0, too)

function setWorking(delta) {
  working += delta;
  document.body.dataset.working = String(working);
}

/**
 * Runs `work` one call at a time: a call made while one runs waits, and only the latest of
 * those runs (drawing fires far more often than the server can answer; only the newest matters).
 */
function latestOnly(owner, work) {
  let running = false;
  let pending = null;
  return (...args) => {
    pending = args;
    if (running) return;
    running = true;
    setWorking(1);
    (async () => {
      while (pending) {
        const next = pending;
        pending = null;
        try {
          await work(...next);
          clearStatus(owner);
        } catch (error) {
          report(owner, error);
        }
      }
      running = false;
      setWorking(-1);
    })();
  };
}

// ---------------------------------------------------------------------------------------------
// Images: flat lists of H*W grey levels in [0, 1], drawn at their own size (CSS scales them).

const model = { name: "", shape: [28, 28], latentDim: 0, kl: [], calibration: null, limits: {} };

function renderImages(canvas, images, cols, scale) {
  const [h, w] = model.shape;
  const rows = Math.max(1, Math.ceil(images.length / cols));
  canvas.width = cols * w + (cols - 1) * GAP;
  canvas.height = rows * h + (rows - 1) * GAP;
  canvas.style.width = `${canvas.width * scale}px`;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#333";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  images.forEach((pixels, k) => {
    const image = ctx.createImageData(w, h);
    for (let i = 0; i < pixels.length; i += 1) {
      const grey = Math.round(Math.min(1, Math.max(0, pixels[i])) * 255);
      image.data.set([grey, grey, grey, 255], i * 4);
    }
    ctx.putImageData(image, (k % cols) * (w + GAP), Math.floor(k / cols) * (h + GAP));
  });
  // Counts the images drawn: the browser test waits on it (an unchanged image is news too).
  canvas.dataset.renders = String(Number(canvas.dataset.renders ?? 0) + 1);
}

const DIGIT_WIDTH = 140; // CSS pixels, whatever the model's image size
const renderDigit = (canvas, pixels) =>
  renderImages(canvas, [pixels], 1, DIGIT_WIDTH / model.shape[1]);

/** Grey levels of a canvas (its red channel) as a flat list in [0, 1], rounded for the wire. */
function greyLevels(canvas) {
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  const out = new Array(canvas.width * canvas.height);
  for (let i = 0; i < out.length; i += 1) out[i] = Math.round((data[i * 4] / 255) * 1000) / 1000;
  return out;
}

function canvasOf(w, h) {
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  return canvas;
}

/**
 * 8-bit pixels of size w x h (MNIST's 28x28) on a canvas of the model's shape: centred on it
 * when the model's images are as large or larger, as the training package makes a model's
 * images (training/images.py: MNIST's digits on a larger black canvas); shrunk to fit if not.
 */
function toModelShape(pixels, w, h) {
  const source = canvasOf(w, h);
  const ctx = source.getContext("2d");
  const image = ctx.createImageData(w, h);
  pixels.forEach((v, i) => image.data.set([v, v, v, 255], i * 4));
  ctx.putImageData(image, 0, 0);
  const [mh, mw] = model.shape;
  if (mh === h && mw === w) return source;
  const target = canvasOf(mw, mh);
  const tctx = target.getContext("2d", { willReadFrequently: true });
  tctx.fillStyle = "#000";
  tctx.fillRect(0, 0, mw, mh);
  tctx.imageSmoothingQuality = "high";
  const scale = Math.min(1, mw / w, mh / h);
  const [dw, dh] = [w * scale, h * scale];
  tctx.drawImage(source, (mw - dw) / 2, (mh - dh) / 2, dw, dh);
  return target;
}

// ---------------------------------------------------------------------------------------------
// Drawing: the stroke on a large canvas becomes an MNIST-like image of the model's shape (the
// digit fitted in the central box, centred on its centre of mass), encoded and scored live.

const draw = $("draw");
const drawCtx = draw.getContext("2d", { willReadFrequently: true });
const state = {
  input: null, // the image the model sees (H*W grey levels), null before anything is drawn
  base: [], // its latent means (zeros before), which the sliders start from
  baseImage: null, // the base decoded, once known
  edits: new Map(), // dimension -> value set on its slider (a slider snaps to its step)
  version: 0, // bumped with every new base: slider answers for an older one are dropped
  cleared: 0, // bumped by Clear: answers about the drawing before it are dropped
};

function clearDrawing() {
  drawCtx.fillStyle = "#000";
  drawCtx.fillRect(0, 0, draw.width, draw.height);
}

function drawingAsInput() {
  const { data } = drawCtx.getImageData(0, 0, draw.width, draw.height);
  let top = draw.height;
  let left = draw.width;
  let bottom = -1;
  let right = -1;
  for (let y = 0; y < draw.height; y += 1) {
    for (let x = 0; x < draw.width; x += 1) {
      if (data[(y * draw.width + x) * 4] > 16) {
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
        left = Math.min(left, x);
        right = Math.max(right, x);
      }
    }
  }
  if (bottom < 0) return null;
  const [h, w] = model.shape;
  const bw = right - left + 1;
  const bh = bottom - top + 1;
  // Fitted in MNIST's box (which keeps its size on a model of larger images: toModelShape) ...
  const box = MNIST_BOX * Math.min(1, Math.min(h, w) / MNIST_SIDE);
  const fit = box / Math.max(bw, bh);
  const fitted = canvasOf(w, h);
  const fctx = fitted.getContext("2d", { willReadFrequently: true });
  fctx.imageSmoothingQuality = "high";
  const [dw, dh] = [bw * fit, bh * fit];
  fctx.drawImage(draw, left, top, bw, bh, (w - dw) / 2, (h - dh) / 2, dw, dh);
  // ... and centres it on its centre of mass.
  const pixels = greyLevels(fitted);
  let mass = 0;
  let cx = 0;
  let cy = 0;
  pixels.forEach((v, i) => {
    mass += v;
    cx += v * (i % w);
    cy += v * Math.floor(i / w);
  });
  if (mass === 0) return null;
  const shifted = canvasOf(w, h);
  const sctx = shifted.getContext("2d", { willReadFrequently: true });
  sctx.fillStyle = "#000";
  sctx.fillRect(0, 0, w, h);
  sctx.drawImage(fitted, Math.round((w - 1) / 2 - cx / mass), Math.round((h - 1) / 2 - cy / mass));
  return greyLevels(shifted);
}

// `cleared` is the drawing's generation when the input was taken: an input queued before a
// Clear must not show its answers after it.
const analyse = latestOnly("draw", async (image, cleared) => {
  const images = [image];
  const [encoded, scored] = await Promise.all([
    call("/encode", { images, seed: SEED }, "draw"),
    call("/score", { images, seed: SEED }, "draw"),
  ]);
  const mu = encoded.mu[0];
  const decoded = await call("/decode", { z: [mu] }, "draw");
  // Answers for an earlier state of a stroke are shown (that is drawing live); for a drawing
  // cleared since, they are not.
  if (state.cleared !== cleared) return;
  renderDigit($("recon"), decoded.images[0]);
  renderBars(mu, encoded.sigma[0]);
  renderScore(scored);
  setBase(mu, decoded.images[0]);
});

function inputChanged(image) {
  state.input = image;
  renderDigit($("input"), image);
  analyse(image, state.cleared);
}

let stroke = null; // the last point of the stroke under way

function pointAt(event) {
  const box = draw.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * draw.width) / box.width,
    ((event.clientY - box.top) * draw.height) / box.height,
  ];
}

function strokeTo(point) {
  drawCtx.strokeStyle = "#fff";
  drawCtx.lineWidth = BRUSH * draw.width;
  drawCtx.lineCap = "round";
  drawCtx.lineJoin = "round";
  drawCtx.beginPath();
  drawCtx.moveTo(...stroke);
  drawCtx.lineTo(...point);
  drawCtx.stroke();
  stroke = point;
  const image = drawingAsInput();
  if (image) inputChanged(image);
}

draw.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  draw.setPointerCapture(event.pointerId);
  stroke = pointAt(event);
  strokeTo(stroke);
});
draw.addEventListener("pointermove", (event) => {
  if (stroke) strokeTo(pointAt(event));
});
for (const type of ["pointerup", "pointercancel"]) {
  draw.addEventListener(type, () => {
    stroke = null;
  });
}

/** Nothing drawn: blank images, no score, and the sliders on the origin of the latent space. */
function resetDrawing() {
  clearDrawing();
  state.input = null;
  state.cleared += 1;
  const blank = new Array(model.shape[0] * model.shape[1]).fill(0);
  for (const id of ["input", "recon"]) renderDigit($(id), blank);
  $("score").textContent = "";
  const origin = new Array(model.latentDim).fill(0);
  renderBars(origin, null);
  setBase(origin, null);
}

$("clear").addEventListener("click", resetDrawing);

/** Shows a test digit on the drawing canvas and sends it as it is (at the model's shape). */
function pickDigit(digit, size) {
  const [w, h] = size;
  const source = toModelShape(digit.pixels, w, h);
  clearDrawing();
  drawCtx.imageSmoothingQuality = "high";
  drawCtx.drawImage(source, 0, 0, draw.width, draw.height);
  inputChanged(greyLevels(source));
}

// ---------------------------------------------------------------------------------------------
// What the model says about the drawing: latent means as bars, the anomaly score.

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  parent.appendChild(element);
  return element;
}

function topDims() {
  return model.kl
    .map((kl, dim) => ({ dim, kl }))
    .sort((a, b) => b.kl - a.kl)
    .slice(0, Math.min(TOP_DIMS, model.latentDim));
}

function renderBars(mu, sigma) {
  const bars = $("bars");
  const width = 12;
  const height = 100;
  bars.replaceChildren();
  bars.setAttribute("viewBox", `0 0 ${mu.length * width} ${height}`);
  bars.setAttribute("preserveAspectRatio", "none"); // bars as wide as the card, whatever d is
  const top = new Set(topDims().map(({ dim }) => dim));
  mu.forEach((value, dim) => {
    const clipped = Math.max(-Z_RANGE, Math.min(Z_RANGE, value));
    const length = (Math.abs(clipped) / Z_RANGE) * (height / 2);
    const rect = svg(
      "rect",
      {
        x: dim * width + 1,
        y: clipped >= 0 ? height / 2 - length : height / 2,
        width: width - 2,
        height: Math.max(length, 0.5),
        class: `${clipped >= 0 ? "up" : "down"}${top.has(dim) ? " top" : ""}`,
      },
      bars,
    );
    const spread = sigma ? `, sigma ${sigma[dim].toFixed(2)}` : "";
    svg("title", {}, rect).textContent = `z[${dim}]: mean ${value.toFixed(2)}${spread}`;
  });
  const axis = { x1: 0, x2: mu.length * width, y1: height / 2, y2: height / 2, class: "axis" };
  svg("line", axis, bars);
}

function renderScore(scored) {
  const score = scored.neg_elbo[0];
  let text = `Anomaly score (negative ELBO): ${score.toFixed(1)}`;
  if (scored.percentile) {
    const percentile = scored.percentile[0];
    const held = model.calibration ? ` of ${model.calibration.data}` : "";
    text += `; percentile ${percentile.toFixed(0)}${held}`;
    text += scored.outlier[0]
      ? `; OUTLIER (above ${scored.threshold.toFixed(1)}): unusual for this model.`
      : `; typical (threshold ${scored.threshold.toFixed(1)}).`;
  } else {
    text += "; this model has no calibration, so no percentile.";
  }
  $("score").textContent = text;
  $("score").dataset.outlier = String(Boolean(scored.outlier?.[0]));
}

// ---------------------------------------------------------------------------------------------
// Sliders on the most informative dimensions: each move decodes the edited latent at once.

const sliders = [];

function buildSliders() {
  const box = $("sliders");
  for (const { dim, kl } of topDims()) {
    const label = document.createElement("label");
    label.className = "slider";
    const name = document.createElement("span");
    name.textContent = `z[${dim}]`;
    name.title = `KL ${kl.toFixed(2)} nats on the test set`;
    const input = Object.assign(document.createElement("input"), {
      type: "range",
      min: String(-Z_RANGE),
      max: String(Z_RANGE),
      step: "0.05",
      value: "0",
    });
    input.dataset.dim = String(dim);
    const value = document.createElement("output");
    value.textContent = "0.00";
    input.addEventListener("input", () => {
      value.textContent = Number(input.value).toFixed(2);
      state.edits.set(dim, Number(input.value));
      decodeEdited();
    });
    label.append(name, input, value);
    box.appendChild(label);
    sliders.push({ dim, input, value });
  }
}

function setBase(mu, decoded) {
  state.base = mu.slice();
  state.baseImage = decoded;
  state.version += 1;
  resetSliders();
}

function resetSliders() {
  state.edits.clear();
  for (const { dim, input, value } of sliders) {
    input.value = String(state.base[dim]);
    value.textContent = state.base[dim].toFixed(2);
  }
  if (state.baseImage) renderDigit($("edited"), state.baseImage);
  else decodeEdited();
}

const decodeEdited = latestOnly("sliders", async () => {
  const version = state.version;
  const z = state.base.slice();
  for (const [dim, value] of state.edits) z[dim] = value;
  const decoded = await call("/decode", { z: [z] }, "sliders");
  if (version !== state.version) return;
  if (state.edits.size === 0) state.baseImage = decoded.images[0];
  renderDigit($("edited"), decoded.images[0]);
});

$("reset").addEventListener("click", resetSliders);

// ---------------------------------------------------------------------------------------------
// Samples from the prior, at a temperature, reproducible by seed.

function numberOf(id, label) {
  const raw = $(id).value.trim();
  const value = Number(raw);
  if (raw === "" || !Number.isFinite(value)) throw new Notice(`${label} must be a number.`);
  return value;
}

const sample = latestOnly("samples", async () => {
  const body = {
    n: Math.min(SAMPLE_COUNT, model.limits.max_n ?? SAMPLE_COUNT),
    temperature: numberOf("temperature", "Temperature"),
    seed: numberOf("seed", "Seed"),
  };
  const answer = await call("/sample", body, "samples");
  renderImages($("samples"), answer.images, Math.ceil(Math.sqrt(body.n)), 3);
  $("samples-caption").textContent =
    `${body.n} samples, z ~ N(0, ${body.temperature}^2 I), seed ${answer.seed}.`;
});

$("sample-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sample();
});

// ---------------------------------------------------------------------------------------------
// Interpolation between two digits (the drawing or test digits), as a strip and animated.

const DRAWING = "drawing";
let digits = new Map(); // label -> the test digit, as an image of the model's shape
let animation = null;

function walkEnd(select) {
  if (select.value === DRAWING) {
    if (!state.input) throw new Notice("Draw a digit first, or pick a test digit.");
    return state.input;
  }
  return digits.get(select.value);
}

const walk = latestOnly("walk", async () => {
  const steps = numberOf("walk-steps", "Steps");
  const body = {
    start: walkEnd($("walk-a")),
    end: walkEnd($("walk-b")),
    steps,
    method: $("walk-method").value,
  };
  const answer = await call("/interpolate", body, "walk");
  const strip = $("strip");
  renderImages(strip, answer.images, answer.images.length, 2);
  strip.dataset.frames = String(answer.images.length);
  clearInterval(animation);
  let frame = 0;
  const last = answer.images.length - 1;
  const show = () => {
    const k = frame % (2 * last); // there and back again
    renderDigit($("walk-frame"), answer.images[k <= last ? k : 2 * last - k]);
    frame += 1;
  };
  show();
  animation = setInterval(show, FRAME_MS);
});

$("walk-form").addEventListener("submit", (event) => {
  event.preventDefault();
  walk();
});

function fillWalkChoices() {
  for (const [id, chosen] of [["walk-a", "7"], ["walk-b", "2"]]) {
    const select = $(id);
    select.append(new Option("the drawing", DRAWING));
    for (const label of digits.keys()) {
      select.append(new Option(`test digit ${label}`, label, false, label === chosen));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Start: the model's description, then everything that depends on it.

async function loadDigits() {
  const response = await fetch(new URL("digits.json", import.meta.url));
  if (!response.ok) throw new Notice(`Cannot load the test digits (HTTP ${response.status}).`);
  const { shape, digits: list } = await response.json();
  const [h, w] = shape;
  const box = $("digits");
  digits = new Map(
    list.map((digit) => [String(digit.label), greyLevels(toModelShape(digit.pixels, w, h))]),
  );
  for (const digit of list) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "pick";
    button.setAttribute("aria-label", `Test digit ${digit.label}`);
    button.dataset.label = String(digit.label);
    const thumb = toModelShape(digit.pixels, w, h);
    button.appendChild(thumb);
    button.addEventListener("click", () => pickDigit(digit, [w, h]));
    box.appendChild(button);
  }
}

async function start() {
  const info = await call("/model", undefined, "start");
  const { manifest } = info;
  Object.assign(model, {
    name: `${manifest.name} ${manifest.version}`,
    shape: manifest.image_shape,
    latentDim: info.latent_dim,
    kl: manifest.metrics.kl_per_dim,
    calibration: manifest.calibration,
    limits: info.limits,
  });
  const [h, w] = model.shape;
  $("model").textContent =
    `${model.name}: ${h}x${w} images, ${model.latentDim} latent dimensions ` +
    `(${manifest.metrics.active_units} active).`;
  for (const element of document.querySelectorAll(".image-size")) element.textContent = `${h}x${w}`;
  $("walk-steps").max = String(model.limits.max_steps ?? "");
  renderDigit($("walk-frame"), new Array(h * w).fill(0));
  buildSliders();
  resetDrawing();
  await loadDigits();
  fillWalkChoices();
  showStatus("ok", "Ready: draw a digit or pick one.");
  $("explorer").inert = false; // usable only once it knows the model
  document.body.dataset.ready = "true";
}

clearDrawing();
start().catch((error) => report("start", error));
