// The page of `zsseg serve` (plain JavaScript, no library): pick or drop an image, type the classes, POST the image
// to /segment and draw the answer (label map + the server's class colours) over the photo, with a legend of the
// classes present and the share of the image each labels. A new vocabulary is just the next request's ?classes=.
// "Use this browser's camera" segments the browser's own camera (getUserMedia: the page must come from localhost or
// https): each frame is copied to a canvas, sent as JPEG, and its overlay drawn over that same frame; one request
// at a time, so the rate is the server's. The view shows a result only while it is the answer to the current photo
// and classes: any error (a refused vocabulary, a file that is not an image or is too large) clears it and the legend.
"use strict";

const state = {
  file: null, photo: null, url: null, answer: null, labels: null, busy: false, again: false, stream: null, frames: 0,
  info: null,
};
const $ = (id) => document.getElementById(id);

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = kind === "error" ? "error" : "";
  status.dataset.state = kind || "idle";
}

function clearResult() {
  state.answer = null;
  state.labels = null;
  window.lastAnswer = null; // for scripts and tests driving the page
  $("legend").textContent = "";
}

function fail(text) { // an error: no earlier result stays on screen to be taken for this one
  clearResult();
  $("view").hidden = true;
  setStatus(text, "error");
}

async function loadInfo() {
  try {
    const info = await (await fetch("info")).json();
    state.info = info;
    $("classes").value = info.vocabulary || info.classes.join(", ");
    if (info.named_vocabularies && info.named_vocabularies.length) {
      $("named").textContent = ` (${info.named_vocabularies.join(", ")})`;
    }
    $("server-info").textContent =
      `backend ${info.backend}, up to ${info.max_classes} classes, images up to ${(info.max_pixels / 1e6).toFixed(0)} MP`;
    if (info.random_weights) {
      const banner = $("banner");
      banner.textContent = "RANDOM WEIGHTS - this bundle is a pipeline check only: its labels are meaningless";
      banner.style.display = "block";
    }
    $("camera-note").textContent = info.camera ? "" :
      "The server has no camera of its own: \"Use this browser's camera\" sends this browser's camera frames to " +
      "it. For a camera attached to a device, run `zsseg camera DEVICE --bundle ... --preview PORT` there.";
  } catch (error) {
    $("server-info").textContent = "cannot reach the server: " + error;
  }
}

function megapixels(pixels) { return (pixels / 1e6).toFixed(1).replace(/\.0$/, ""); }

function chooseFile(file) {
  if (!file) return;
  stopCamera(); // a chosen photo replaces the camera
  clearResult();
  $("view").hidden = true; // shown again with the new photo, once the browser has read it
  state.file = null;
  state.photo = null;
  $("segment").disabled = true;
  setStatus(`reading ${file.name}...`, "busy");
  if (state.url) URL.revokeObjectURL(state.url); // the previous photo's (kept while it could be redrawn)
  const url = URL.createObjectURL(file);
  state.url = url;
  const photo = new Image();
  photo.onload = () => {
    const width = photo.naturalWidth, height = photo.naturalHeight;
    const limit = state.info ? state.info.max_pixels : 0;
    if (limit && width * height > limit) { // refused here, as the server would: nothing drawn, nothing sent
      fail(`${file.name} is ${width}x${height} = ${megapixels(width * height)} MP, over the ` +
        `${megapixels(limit)} MP limit of this server: choose a smaller image, or scale it down first`);
      return;
    }
    state.file = file;
    state.photo = photo;
    $("segment").disabled = false;
    $("view").hidden = false;
    draw();
    segment();
  };
  photo.onerror = () => {
    fail(`${file.name} is not an image this browser can show (JPEG, PNG, WebP, ...)`);
  };
  photo.src = url;
}

function decodeLabels(answer) {
  const bytes = Uint8Array.from(atob(answer.labels_raw), (c) => c.charCodeAt(0));
  if (answer.labels_dtype === "uint8") return bytes;
  const view = new DataView(bytes.buffer);
  const labels = new Uint16Array(bytes.length / 2);
  for (let i = 0; i < labels.length; i++) labels[i] = view.getUint16(2 * i, true);
  return labels;
}

function draw() {
  const canvas = $("canvas");
  const photo = state.photo;
  if (!photo) return;
  canvas.width = photo.naturalWidth || photo.width; // an <img>, or a captured camera frame (a canvas)
  canvas.height = photo.naturalHeight || photo.height;
  const context = canvas.getContext("2d");
  context.drawImage(photo, 0, 0);
  const answer = state.answer;
  if (!answer) return;
  if (answer.width !== canvas.width || answer.height !== canvas.height) {
    fail(`the answer is ${answer.width}x${answer.height} but the photo is ${canvas.width}x${canvas.height}`);
    return;
  }
  const alpha = parseFloat($("alpha").value);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
  const data = pixels.data;
  const labels = state.labels;
  const colors = answer.colors;
  for (let i = 0; i < labels.length; i++) {
    const color = colors[labels[i]];
    const o = 4 * i;
    data[o] = Math.round((1 - alpha) * data[o] + alpha * color[0]);
    data[o + 1] = Math.round((1 - alpha) * data[o + 1] + alpha * color[1]);
    data[o + 2] = Math.round((1 - alpha) * data[o + 2] + alpha * color[2]);
  }
  context.putImageData(pixels, 0, 0);
  if (answer.objects) drawObjects(context, answer);
}

// ?objects=1 (the "Objects" box): each object's box [x, y, w, h] in its class's colour, its name and score above it
function drawObjects(context, answer) {
  const line = Math.max(2, Math.round(context.canvas.width / 400));
  context.lineWidth = line;
  context.font = `${6 * line + 4}px system-ui, sans-serif`;
  context.textBaseline = "bottom";
  for (const item of answer.objects.objects) {
    const [x, y, w, h] = item.box;
    const color = answer.colors[item.class_id];
    context.strokeStyle = `rgb(${color[0]}, ${color[1]}, ${color[2]})`;
    context.strokeRect(x + line / 2, y + line / 2, Math.max(w - line, 1), Math.max(h - line, 1));
    const text = `${item.name} ${item.score.toFixed(2)}`;
    const top = Math.max(y, 6 * line + 6);
    context.fillStyle = "#000";
    context.fillRect(x, top - 6 * line - 6, context.measureText(text).width + 4, 6 * line + 6);
    context.fillStyle = "#fff";
    context.fillText(text, x + 2, top - 1);
  }
}

function showLegend(answer) {
  const legend = $("legend");
  legend.textContent = "";
  for (const [name, share] of Object.entries(answer.areas)) {
    const index = answer.classes.indexOf(name);  // "unknown" (--unknown-below): its reserved id's colour
    const color = answer.colors[index < 0 && answer.unknown ? answer.unknown.id : index];
    const item = document.createElement("li");
    item.dataset.class = name;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${color[0]}, ${color[1]}, ${color[2]})`;
    const label = document.createElement("span");
    label.textContent = name;
    const area = document.createElement("span");
    area.className = "area";
    area.textContent = (100 * share).toFixed(1) + " %";
    item.append(swatch, label, area);
    legend.append(item);
  }
}

async function segment() {
  if (!state.file) return;
  if (state.busy) { state.again = true; return; } // once the request in flight is answered
  const photo = state.photo;
  const classes = $("classes").value.split(",").map((s) => s.trim()).filter((s) => s).join(",");
  if (!classes) {
    fail("type at least one class name");
    return;
  }
  state.busy = true;
  $("segment").disabled = true;
  setStatus("segmenting...", "busy");
  try {
    const query = new URLSearchParams({ classes: classes, labels: "raw", scores: "0" });
    if ($("objects").checked) query.set("objects", "1"); // each class's connected regions, drawn as boxes
    // an image type: the server refuses the types a form of another site could send (415)
    const type = (state.file.type || "").startsWith("image/") ? state.file.type : "application/octet-stream";
    const response = await fetch("segment?" + query, { method: "POST", body: state.file, headers: { "Content-Type": type } });
    const text = await response.text();
    let answer;
    try {
      answer = JSON.parse(text);
    } catch (error) {
      answer = { error: text.slice(0, 300) || response.statusText };
    }
    if (state.photo !== photo) return; // another photo was chosen meanwhile: this answer is not its answer
    if (!response.ok) {
      fail(`HTTP ${response.status}: ${answer.error}`);
      return;
    }
    state.answer = answer;
    state.labels = decodeLabels(answer);
    window.lastAnswer = answer; // for scripts and tests driving the page
    $("view").hidden = false;
    draw();
    showLegend(answer);
    const ms = answer.timing_ms;
    const source = state.stream ? `camera frame ${state.frames}, ` : "";
    setStatus(`${source}${answer.width}x${answer.height}, ${answer.classes.length} classes: ${ms.total.toFixed(0)} ms ` +
      `(segment ${ms.segment.toFixed(0)} ms)` + (answer.random_weights ? " - RANDOM WEIGHTS" : ""), "done");
  } catch (error) {
    if (state.photo === photo) fail("request failed: " + error);
  } finally {
    state.busy = false;
    $("segment").disabled = !state.file;
    if (state.again) {
      state.again = false;
      if (!state.stream) segment();
    }
  }
}

function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

function captureFrame(video) {
  const frame = document.createElement("canvas");
  frame.width = video.videoWidth;
  frame.height = video.videoHeight;
  frame.getContext("2d").drawImage(video, 0, 0);
  return new Promise((resolve) => frame.toBlob((blob) => resolve({ frame, blob }), "image/jpeg", 0.9));
}

async function cameraLoop(stream) {
  const video = $("video");
  while (state.stream === stream) {
    if (video.readyState < 2 || !video.videoWidth || state.busy) { await sleep(30); continue; }
    const { frame, blob } = await captureFrame(video);
    if (state.stream !== stream) break;
    if (!blob) { stopCamera(); fail("the browser could not encode a camera frame"); break; }
    state.frames += 1;
    state.photo = frame; // the overlay is drawn over the very frame that was sent
    state.file = blob;
    await segment();
    window.cameraFrames = state.frames; // for scripts and tests driving the page
    if ($("status").dataset.state === "error") await sleep(1000); // e.g. a refused vocabulary: do not spin
  }
}

function stopCamera() {
  const stream = state.stream;
  state.stream = null;
  if (stream) stream.getTracks().forEach((track) => track.stop());
  $("video").srcObject = null;
  $("camera").textContent = "Use this browser's camera";
}

async function toggleCamera() {
  if (state.stream) { stopCamera(); setStatus("camera stopped", "idle"); return; }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    fail("this browser gives pages a camera only over https or from localhost / 127.0.0.1");
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    const video = $("video");
    video.srcObject = stream;
    await video.play();
    state.stream = stream;
    state.frames = 0;
    $("camera").textContent = "Stop the camera";
    cameraLoop(stream);
  } catch (error) {
    fail("no camera: " + error.message);
  }
}

function wire() {
  const drop = $("drop");
  drop.addEventListener("click", () => $("file").click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  $("file").addEventListener("change", (e) => chooseFile(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    chooseFile(e.dataTransfer.files[0]);
  });
  $("segment").addEventListener("click", segment);
  $("camera").addEventListener("click", toggleCamera);
  $("classes").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); segment(); }
  });
  $("alpha").addEventListener("input", draw);
  $("objects").addEventListener("change", () => { if (state.file && !state.stream) segment(); });
}

wire();
loadInfo();
