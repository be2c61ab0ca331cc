// Huiyin page: "试听 Try a voice" and "管理 Admin" tabs, plain ES module, no dependencies.
// Anything that comes from the server or the user reaches the DOM through textContent or
// setAttribute only, never as HTML.

const $ = (selector) => document.querySelector(selector);
const TOKEN_KEY = "huiyin.adminToken";
const API_KEY = "huiyin.apiKey";
const STYLE_NAMES = {
  neutral: "中性", cheerful: "愉快", calm: "平静", serious: "严肃", apologetic: "歉意",
};
const STATS_EVERY_MS = 5000;
const WARM_EVERY_MS = 1000;

// ---------------------------------------------------------------- helpers

class ApiError extends Error {
  constructor(status, message, code = null, field = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** The API's JSON error ({"status":"error","code","message","field"}) as an ApiError. */
async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall back to the status line
  }
  let message = body?.message || `${response.status} ${response.statusText || "error"}`;
  if (response.status === 401) {
    message = `需要有效的 API 密钥（在“API 密钥”中填写）。${message}`;
  } else if (response.status === 403) {
    message = `密钥无此权限。${message}`;
  } else if (response.status === 429) {
    const wait = response.headers.get("Retry-After");
    message = `请求过于频繁${wait ? `，请 ${wait} 秒后重试` : ""}。${message}`;
  }
  return new ApiError(response.status, message, body?.code ?? null, body?.field ?? null);
}

/** The speaking key the page sends (the API key field), or the admin token. */
function speakingKey() {
  return sessionStorage.getItem(API_KEY) || "";
}

/** Headers that carry the API key, when one is set. */
function keyHeaders() {
  const key = speakingKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** A URL the <audio> element can play: as it is, or (with a key, which an <audio> element
 * cannot send) fetched with the key and played from memory. */
async function playable(url, signal, key = speakingKey()) {
  if (!key) return url;
  const headers = { Authorization: `Bearer ${key}` };
  const response = await fetch(url, { headers, signal, cache: "no-store" });
  if (!response.ok) throw await errorFrom(response);
  return URL.createObjectURL(await response.blob());
}

/** fetch JSON; the admin token goes in the Authorization header, never in the URL. */
async function api(path, { method = "GET", json, token, signal } = {}) {
  const headers = new Headers({ Accept: "application/json" });
  const key = token || speakingKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  let body;
  if (json !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, signal, cache: "no-store" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "无法连接服务器 (network error)");
  }
  if (!response.ok) throw await errorFrom(response);
  return response.status === 204 ? null : response.json();
}

function showMessage(element, text, kind = "error") {
  element.textContent = text || "";
  element.classList.toggle("info", kind === "info");
  element.hidden = !text;
}

/** Characters as the server counts them (code points, like Python's len). */
const charCount = (text) => [...text].length;
// An SSML document may be 8 times max_text_length with its markup (the gateway holds
// what it says to max_text_length).
const isSsml = (text) => /^\s*\ufeff?\s*(<speak|<\?xml|<!DOCTYPE|<!--)/.test(text);
const lengthLimit = (text) => voices.maxLength * (isSsml(text) ? 8 : 1);

function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 || value >= 100 ? 0 : 1)} ${units[unit]}`;
}

function formatSeconds(seconds) {
  if (!Number.isFinite(seconds)) return "—";
  if (seconds < 60) return `${seconds.toFixed(1)} 秒`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} 分钟`;
  return `${(seconds / 3600).toFixed(1)} 小时`;
}

const formatNumber = (n) => (Number.isFinite(n) ? n.toLocaleString("zh-CN") : "—");

function element(tag, { text, className, attrs } = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}

/** Resolves on the target's next `type` event. */
const once = (target, type) =>
  new Promise((resolve) => target.addEventListener(type, resolve, { once: true }));

// Only one player sounds at a time.
const players = [$("#player"), $("#phrase-player")];
for (const player of players) {
  player.addEventListener("play", () => {
    for (const other of players) if (other !== player) other.pause();
  });
}

// ---------------------------------------------------------------- tabs

const tabs = [...document.querySelectorAll('[role="tab"]')];

function selectTab(tab, { focus = false, remember = true } = {}) {
  for (const t of tabs) {
    const selected = t === tab;
    t.setAttribute("aria-selected", String(selected));
    t.tabIndex = selected ? 0 : -1;
    document.getElementById(t.getAttribute("aria-controls")).hidden = !selected;
  }
  if (focus) tab.focus();
  const admin = tab.id === "tab-admin";
  if (remember) {
    history.replaceState(null, "", admin ? "#admin" : location.pathname + location.search);
  }
  adminShown(admin);
}

for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (event) => {
    const i = tabs.indexOf(tab);
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    selectTab(tabs[(next + tabs.length) % tabs.length], { focus: true });
  });
}

// ---------------------------------------------------------------- try a voice

const form = $("#tts-form");
const textInput = $("#text");
const counter = $("#counter");
const voiceSelect = $("#voice");
const styleSelect = $("#style");
const synthButton = $("#synthesize");
const tryMessage = $("#try-message");
const player = $("#player");
const downloadButton = $("#download");
const playerWave = $("#player-wave");
followPlayhead(playerWave, player);
const result = { cache: $("#r-cache"), duration: $("#r-duration"), latency: $("#r-latency") };
const ranges = ["speed", "pitch"].map((name) => ({
  name,
  input: $(`#${name}`),
  output: $(`#${name}-value`),
  field: $(`#field-${name}`),
}));

const voices = { byName: new Map(), maxLength: 0 };

async function loadVoices() {
  let data;
  try {
    data = await api("/api/voices");
  } catch (err) {
    if (err.status === 503) {
      showMessage(tryMessage, "语音正在加载，请稍候… (voices loading)", "info");
      setTimeout(loadVoices, 2000);
    } else {
      showMessage(tryMessage, `无法加载音色：${err.message}`);
    }
    return;
  }
  showMessage(tryMessage, "");
  voices.maxLength = data.max_text_length;
  voiceSelect.replaceChildren();
  for (const engine of data.engines) {
    const parent = data.engines.length > 1
      ? voiceSelect.appendChild(element("optgroup", { attrs: { label: engine.name } }))
      : voiceSelect;
    for (const voice of engine.voices) {
      voices.byName.set(voice.name, { voice, engine });
      const option = element("option", { text: voice.name, attrs: { value: voice.name } });
      if (voice.description) option.title = voice.description;
      parent.appendChild(option);
    }
  }
  if (voices.byName.has(data.default_voice)) voiceSelect.value = data.default_voice;
  purgeVoice.replaceChildren(...[...voiceSelect.options].map((o) => o.cloneNode(true)));
  purgeVoice.value = voiceSelect.value;
  applyVoice(true);
  updateCounter();
  synthButton.disabled = false;
  showFronts(data.fronts || {});
}

/** The other APIs the gateway speaks: their routes and the voice names each accepts. */
function showFronts(fronts) {
  const list = $("#fronts");
  list.replaceChildren();
  for (const [name, front] of Object.entries(fronts)) {
    const details = list.appendChild(element("details", { className: "front" }));
    details.dataset.front = name;
    const summary = details.appendChild(element("summary"));
    summary.appendChild(element("strong", { text: name }));
    summary.appendChild(element("code", { text: ` ${front.routes.join(" ")}` }));
    const table = details.appendChild(element("table", { className: "front-voices" }));
    const head = table.appendChild(element("tr"));
    head.appendChild(element("th", { text: "音色名 name" }));
    head.appendChild(element("th", { text: "本地音色 voice" }));
    for (const [asked, voice] of Object.entries(front.voices)) {
      const row = table.appendChild(element("tr"));
      row.appendChild(element("td", { text: asked }));
      row.appendChild(element("td", { text: voice }));
    }
  }
  $("#fronts-card").hidden = Object.keys(fronts).length === 0;
}

/** Styles and setting ranges of the chosen voice's engine. */
function applyVoice(resetValues) {
  const chosen = voices.byName.get(voiceSelect.value);
  if (!chosen) return;
  const { voice, engine } = chosen;
  const previous = styleSelect.value;
  styleSelect.replaceChildren();
  for (const style of voice.styles) {
    const label = STYLE_NAMES[style] ? `${STYLE_NAMES[style]} ${style}` : style;
    styleSelect.appendChild(element("option", { text: label, attrs: { value: style } }));
  }
  styleSelect.disabled = voice.styles.length === 0;
  if (voice.styles.includes(previous)) styleSelect.value = previous;
  else if (voice.styles.includes("neutral")) styleSelect.value = "neutral";

  for (const range of ranges) {
    const limits = engine.settings?.[range.name];
    range.field.hidden = !limits;
    if (!limits) continue;
    range.input.min = String(limits.min);
    range.input.max = String(limits.max);
    range.input.step = "0.01";
    range.input.dataset.default = String(limits.default);
    const current = Number(range.input.value);
    if (resetValues || !(current >= limits.min && current <= limits.max)) {
      range.input.value = String(limits.default);
    }
    showRange(range);
  }
}

function showRange(range) {
  range.output.textContent = `${Number(range.input.value).toFixed(2)}×`;
}

function updateCounter() {
  const count = charCount(textInput.value);
  const limit = lengthLimit(textInput.value);
  const over = voices.maxLength > 0 && count > limit;
  counter.textContent = `${count} / ${limit || "…"}`;
  counter.classList.toggle("over", over);
  textInput.classList.toggle("over", over);
  textInput.setAttribute("aria-invalid", String(over));
}

/** The synthesis parameters shared by the stream URL and POST /api/tts. */
function speechParams() {
  const params = { text: textInput.value, voice: voiceSelect.value };
  if (!styleSelect.disabled && styleSelect.value) params.style = styleSelect.value;
  for (const range of ranges) {
    if (!range.field.hidden) params[range.name] = Number(range.input.value);
  }
  return params;
}

// Playback, the cache label and error messages all come from ONE request to
// /tts/stream.mp3. fetch() reads its X-Cache header (and, when the server refuses, its JSON
// error), and the body is fed to the <audio> element through Media Source Extensions as
// it arrives, so a miss starts playing with its first sentence. Not chosen: <audio
// src="/tts/stream.mp3?..."> with a HEAD or second GET beside it to learn X-Cache. aiohttp
// answers HEAD with the GET handler, so that request would synthesize the text a second
// time; and an <audio> element alone can show neither a header nor the error message.
// Where MediaSource cannot play MP3 (older iOS Safari), the same response plays whole.
// A text too long for a URL (servers and proxies refuse request lines past about 8 KB, and
// a Chinese character takes 9 bytes percent-encoded) goes through POST /api/tts instead and
// plays whole, its cache label from the answer's `cached`.
const canStream = "MediaSource" in window && MediaSource.isTypeSupported("audio/mpeg");
const LONGEST_URL = 8000;
let synthesis = null; // { controller, params } of the latest synthesis
let objectUrl = null;

function setPlayerSource(url) {
  if (objectUrl) URL.revokeObjectURL(objectUrl);
  objectUrl = url && url.startsWith("blob:") ? url : null;
  if (url) {
    player.src = url;
  } else {
    player.removeAttribute("src");
    player.load();
  }
}

function startPlayback(controller, started) {
  player.play().catch((err) => {
    if (controller.signal.aborted || err.name !== "NotAllowedError") return;
    // Autoplay refused: report the time to playable audio instead, and ask for a click.
    showMessage(tryMessage, "浏览器阻止了自动播放，请点击播放按钮。", "info");
    const report = () => showLatency(started, "可播放");
    if (player.readyState >= HTMLMediaElement.HAVE_FUTURE_DATA) report();
    else player.addEventListener("canplay", report, { once: true, signal: controller.signal });
  });
}

function showLatency(started, note = "") {
  const ms = Math.round(performance.now() - started);
  result.latency.textContent = note ? `${ms} ms（${note}）` : `${ms} ms`;
}

function showDuration(seconds) {
  if (Number.isFinite(seconds) && seconds > 0) result.duration.textContent = `${seconds.toFixed(2)} 秒`;
}

function showCache(header) {
  const hit = header === "HIT";
  result.cache.textContent = hit ? "命中 HIT（缓存）" : header === "MISS" ? "未命中 MISS（实时合成）" : "—";
  result.cache.className = hit ? "hit" : header === "MISS" ? "miss" : "";
}

/** Append the response body to a MediaSource as it arrives; end the stream at its end. */
async function streamInto(source, body) {
  if (source.readyState !== "open") await once(source, "sourceopen");
  const buffer = source.addSourceBuffer("audio/mpeg");
  const reader = body.getReader();
  const chunks = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    buffer.appendBuffer(value);
    await once(buffer, "updateend");
    if (player.error) throw new Error("浏览器无法解码音频 (decode error)");
  }
  source.endOfStream();
  return new Blob(chunks, { type: "audio/mpeg" });
}

async function synthesize() {
  const text = textInput.value;
  if (!text.trim()) {
    showMessage(tryMessage, "请输入要合成的文本。");
    textInput.focus();
    return;
  }
  const count = charCount(text);
  if (count > lengthLimit(text)) {
    showMessage(tryMessage, `文本过长：${count} 字，上限 ${lengthLimit(text)} 字。`);
    return;
  }
  synthesis?.controller.abort();
  const controller = new AbortController();
  const params = speechParams();
  synthesis = { controller, params };
  const { signal } = controller;
  const started = performance.now();
  showMessage(tryMessage, "");
  showCache(null);
  result.cache.textContent = "合成中…";
  result.duration.textContent = "—";
  result.latency.textContent = "—";
  downloadButton.disabled = true;
  player.addEventListener("playing", () => showLatency(started), { once: true, signal });

  const query = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
  const url = `/tts/stream.mp3?${query}`;
  const tooLong = url.length > LONGEST_URL;
  let source = null;
  if (canStream && !tooLong) {
    source = new MediaSource();
    setPlayerSource(URL.createObjectURL(source));
    startPlayback(controller, started); // still inside the user's click: allowed to sound
  }
  try {
    if (tooLong) {
      const json = { ...params, format: "mp3" };
      const data = await api("/api/tts", { method: "POST", json, signal });
      showCache(data.cached ? "HIT" : "MISS");
      showDuration(data.duration);
      const audio = new URL(data.audio_url, location.href);
      const playing = await playable(audio.pathname + audio.search, signal);
      setPlayerSource(playing);
      startPlayback(controller, started);
      downloadButton.disabled = false;
      waveformOf(playerWave, player, playing);
      return;
    }
    // no-store: a copy from the browser's HTTP cache would repeat an old X-Cache header.
    const response = await fetch(url, { headers: keyHeaders(), signal, cache: "no-store" });
    if (!response.ok) throw await errorFrom(response);
    showCache(response.headers.get("X-Cache"));
    let whole;
    if (source) {
      whole = await streamInto(source, response.body);
    } else {
      whole = await response.blob();
      setPlayerSource(URL.createObjectURL(whole));
      startPlayback(controller, started);
    }
    downloadButton.disabled = false;
    drawWaveform(playerWave, player, await whole.arrayBuffer()).catch(() => { playerWave.hidden = true; });
  } catch (err) {
    if (signal.aborted) return;
    setPlayerSource(null);
    showCache(null);
    result.cache.textContent = "—";
    const message = err instanceof ApiError ? err.message
      : err.name === "TypeError" ? "无法连接服务器 (network error)" : err.message;
    showMessage(tryMessage, message);
  }
}

// The download is the stored MP3 with a file name. POST /api/tts asks for it only on a click,
// after the stream above has been stored, so it finds the audio instead of synthesizing it.
async function download() {
  if (!synthesis) return;
  downloadButton.disabled = true;
  try {
    // The file is named after the start of the text (the server makes the name safe).
    const name = [...synthesis.params.text.trim()].slice(0, 24).join("");
    const json = { ...synthesis.params, format: "mp3", output_wav_name: name };
    const data = await api("/api/tts", { method: "POST", json });
    showDuration(data.duration);
    const url = new URL(data.download_url, location.href);
    const href = await playable(url.pathname + url.search);
    // A blob has no name of its own; the server's answer names itself (Content-Disposition).
    const saveAs = href.startsWith("blob:") ? `${name || data.key}.mp3` : "";
    const link = element("a", { attrs: { href, download: saveAs } });
    document.body.appendChild(link);
    link.click();
    link.remove();
    if (href.startsWith("blob:")) setTimeout(() => URL.revokeObjectURL(href), 60_000);
  } catch (err) {
    showMessage(tryMessage, `下载失败：${err.message}`);
  } finally {
    downloadButton.disabled = false;
  }
}

player.addEventListener("durationchange", () => showDuration(player.duration));
form.addEventListener("submit", (event) => {
  event.preventDefault();
  synthesize();
});
textInput.addEventListener("input", updateCounter);

// ---------------------------------------------------------------- waveforms and charts

// The waveform of what a player plays: its audio decoded (never routed through Web Audio,
// so playback is untouched), drawn as each pixel column's peak, with the playhead moving.
let decoder = null;

async function drawWaveform(canvas, audioElement, bytes) {
  decoder ??= new OfflineAudioContext(1, 1, 8000); // 8 kHz is plenty to draw
  const buffer = await decoder.decodeAudioData(bytes);
  const samples = buffer.getChannelData(0);
  const columns = canvas.width;
  const peaks = new Float32Array(columns);
  const per = Math.max(1, Math.floor(samples.length / columns));
  for (let x = 0; x < columns; x++) {
    let peak = 0;
    for (let i = x * per, end = Math.min(samples.length, i + per); i < end; i++) {
      const v = Math.abs(samples[i]);
      if (v > peak) peak = v;
    }
    peaks[x] = peak;
  }
  canvas.hidden = false;
  canvas.dataset.seconds = buffer.duration.toFixed(3);
  const paint = () => {
    const ctx = canvas.getContext("2d");
    const mid = canvas.height / 2;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const played = audioElement.duration > 0 ? audioElement.currentTime / audioElement.duration : 0;
    for (let x = 0; x < columns; x++) {
      ctx.fillStyle = x / columns <= played ? "#1a73e8" : "#9aa7b8";
      const h = Math.max(1, peaks[x] * mid);
      ctx.fillRect(x, mid - h, 1, 2 * h);
    }
    canvas.dataset.playhead = played.toFixed(3);
  };
  paint();
  canvas.waveformPaint = paint;
}

function followPlayhead(canvas, audioElement) {
  let frame = null;
  const step = () => {
    canvas.waveformPaint?.();
    frame = audioElement.paused ? null : requestAnimationFrame(step);
  };
  audioElement.addEventListener("play", () => { if (frame === null) frame = requestAnimationFrame(step); });
  audioElement.addEventListener("seeked", () => canvas.waveformPaint?.());
  audioElement.addEventListener("ended", () => canvas.waveformPaint?.());
}

async function waveformOf(canvas, audioElement, url) {
  try {
    const response = await fetch(url);
    if (response.ok) await drawWaveform(canvas, audioElement, await response.arrayBuffer());
  } catch {
    canvas.hidden = true; // a waveform is a nicety: the audio still plays
  }
}

// A line chart of per-minute values (null: no value that minute) on a canvas.
function drawChart(canvas, series, { max, format }) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const pad = 18;
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = "#6b7280";
  ctx.font = "10px sans-serif";
  ctx.fillText(format(max), 2, 10);
  ctx.fillText(format(0), 2, height - 4);
  let points = 0;
  for (const { values, color } of series) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let drawing = false;
    values.forEach((v, i) => {
      if (v === null || v === undefined) { drawing = false; return; }
      const x = pad + (i / Math.max(1, values.length - 1)) * (width - pad - 4);
      const y = height - 4 - (Math.min(v, max) / max) * (height - 16);
      if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      drawing = true;
      points++;
    });
    ctx.stroke();
  }
  canvas.dataset.points = String(points);
}

function renderHistory(minutes) {
  const ratio = minutes.map((m) => (m.hits + m.misses ? m.hits / (m.hits + m.misses) : null));
  drawChart($("#chart-ratio"), [{ values: ratio, color: "#1a73e8" }],
    { max: 1, format: (v) => `${Math.round(v * 100)}%` });
  const p50 = minutes.map((m) => m.p50_ms);
  const p99 = minutes.map((m) => m.p99_ms);
  const top = Math.max(100, ...p99.filter((v) => v !== null));
  drawChart($("#chart-latency"), [{ values: p50, color: "#1a73e8" }, { values: p99, color: "#d93025" }],
    { max: top, format: (v) => `${Math.round(v)} ms` });
}

// ---------------------------------------------------------------- pronunciation preview

// As the author types (debounced), GET /api/pronounce shows each word over its pinyin,
// marked by where its reading came from; it synthesizes nothing.
const preview = $("#preview");
const SOURCE_NAMES = {
  guess: "多音字推测 guessed", rule: "规则 rule", lexicon: "词表 lexicon (this site's and built-in words)",
  dictionary: "词库 dictionary", letters: "字母 letters", ssml: "SSML 标记 markup",
};
let previewTimer = null;
let previewController = null;

function renderPreview(data) {
  preview.replaceChildren();
  for (const sentence of data.sentences) {
    if (sentence.break !== undefined) {  // an SSML <break>: its length
      preview.appendChild(element("span", {
        text: `⏸ ${Math.round(sentence.break * 1000)} ms`, className: "pause break",
      }));
      continue;
    }
    if (sentence.voicing) {  // an SSML span said in its own style, speed, pitch or volume
      const { style, speed, pitch, volume } = sentence.voicing;
      preview.appendChild(element("span", {
        text: `[${style} ×${speed} ♪${pitch} 🔊${volume}]`, className: "pause voicing",
      }));
    }
    for (const clause of sentence.clauses) {
      for (const word of clause.words) {
        const ruby = element("ruby", { text: word.text, className: `src-${word.source}` });
        ruby.title = SOURCE_NAMES[word.source] || word.source;
        ruby.dataset.source = word.source;
        ruby.appendChild(element("rt", { text: word.pinyin.join(" ") }));
        preview.appendChild(ruby);
      }
      preview.appendChild(element("span", {
        text: clause.pause_after === "sentence" ? "‖" : "|", className: "pause",
      }));
    }
  }
}

async function updatePreview() {
  previewController?.abort();
  const text = textInput.value;
  const query = new URLSearchParams({ text, voice: voiceSelect.value });
  if (!text.trim() || charCount(text) > lengthLimit(text) || query.toString().length > LONGEST_URL) {
    preview.replaceChildren();
    return;
  }
  previewController = new AbortController();
  try {
    renderPreview(await api(`/api/pronounce?${query}`, { signal: previewController.signal }));
  } catch (err) {
    if (err.name === "AbortError") return;
    preview.replaceChildren(element("span", { text: err.message, className: "hint" }));
  }
}

function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(updatePreview, 300);
}

textInput.addEventListener("input", schedulePreview);
voiceSelect.addEventListener("change", schedulePreview);
textInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !synthButton.disabled) {
    event.preventDefault();
    form.requestSubmit();
  }
});
voiceSelect.addEventListener("change", () => applyVoice(false));
for (const range of ranges) range.input.addEventListener("input", () => showRange(range));
$("#reset-settings").addEventListener("click", () => applyVoice(true));
downloadButton.addEventListener("click", download);

const keyInput = $("#api-key");
keyInput.value = speakingKey();
if (keyInput.value) $("#key-field").open = true;
keyInput.addEventListener("input", () => {
  const key = keyInput.value.trim();
  if (key) sessionStorage.setItem(API_KEY, key);
  else sessionStorage.removeItem(API_KEY);
});
$("#forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(API_KEY);
  keyInput.value = "";
});

// ---------------------------------------------------------------- admin

const tokenInput = $("#token");
const adminMessage = $("#admin-message");
const adminBody = $("#admin-body");
const phrasePlayer = $("#phrase-player");
const phraseWave = $("#phrase-wave");
followPlayhead(phraseWave, phrasePlayer);
const warmCard = $("#warm-card");
const warmButton = $("#warm");
const warmProgress = $("#warm-progress");
const warmStatus = $("#warm-status");
const warmFailures = $("#warm-failures");
const tenantSelect = $("#tenant-select");

const admin = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  shown: false,
  connected: false,
  statsTimer: null,
  statsBusy: false,
  page: 1,
  pages: 1,
  query: { q: "", tag: "" },
  tags: new Set(),
  job: null,
  jobTimer: null,
  loadedKey: null,
  tenant: "", // the tenant whose stats and phrases are shown ("": the whole site)
};
tokenInput.value = admin.token;

/** Show why an admin call failed; stop asking when the token or the routes are the problem. */
function adminFailed(err) {
  let message = err.message;
  const fatal = err.status === 401 || err.status === 403 || (err.status === 404 && !err.field);
  if (err.status === 404 && !err.field) {
    message = "此服务器没有管理接口。Admin API is not available.";
  } else if (err.status === 401 && !admin.token) {
    message = "需要管理令牌或 admin 密钥，请输入后点击连接。Token required.";
  } else if (err.status === 401) {
    message = "令牌错误，请重新输入。Wrong token.";
    sessionStorage.removeItem(TOKEN_KEY);
    admin.token = "";
  } else if (err.status === 403) {
    message = "此密钥没有 admin 权限。This key has no admin scope.";
    sessionStorage.removeItem(TOKEN_KEY);
    admin.token = "";
  }
  if (fatal) {
    admin.connected = false;
    stopStats();
    stopJob();
    adminBody.hidden = true;
  }
  showMessage(adminMessage, message);
}

function adminShown(shown) {
  admin.shown = shown;
  if (!shown) {
    stopStats();
  } else if (admin.connected) {
    refreshStats();
    startStats();
  } else if (admin.token) {
    connect();
  }
}

async function connect() {
  stopStats();
  try {
    await loadStats();
  } catch (err) {
    adminFailed(err);
    return;
  }
  admin.connected = true;
  adminBody.hidden = false;
  showMessage(adminMessage, "");
  if (admin.shown) startStats();
  loadPhrases();
}

function startStats() {
  stopStats();
  admin.statsTimer = setInterval(() => {
    if (document.visibilityState === "visible") refreshStats();
  }, STATS_EVERY_MS);
}

function stopStats() {
  clearInterval(admin.statsTimer);
  admin.statsTimer = null;
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && admin.shown && admin.connected) refreshStats();
});

async function refreshStats() {
  if (admin.statsBusy || !admin.connected) return;
  try {
    await loadStats();
    showMessage(adminMessage, ""); // a passing failure has passed
  } catch (err) {
    adminFailed(err);
  }
}

async function loadStats() {
  admin.statsBusy = true;
  const asked = admin.tenant;
  const query = asked ? `?tenant=${encodeURIComponent(asked)}` : "";
  try {
    const data = await api(`/admin/stats${query}`, { token: admin.token });
    if (asked === admin.tenant) renderStats(data);
  } finally {
    admin.statsBusy = false;
  }
}

/** The tenants to choose from: every one the site names, or a tenant's admin key's own. */
function renderTenants(data) {
  const names = data.tenants || (data.tenant ? [data.tenant.tenant] : []);
  const own = !data.tenants && data.tenant; // a tenant's admin key: its tenant only
  const wanted = [own ? null : ["", "全站 Site"], ...names.map((n) => [n, n])].filter(Boolean);
  const have = [...tenantSelect.options].map((o) => o.value);
  if (have.join("\n") !== wanted.map(([v]) => v).join("\n")) {
    tenantSelect.replaceChildren(...wanted.map(([value, text]) => element("option", { text, attrs: { value } })));
  }
  if (own) admin.tenant = data.tenant.tenant;
  tenantSelect.value = admin.tenant;
  tenantSelect.disabled = Boolean(own);
  warmCard.hidden = Boolean(own); // the phrase files are the site's
}

function renderTenantStats(t) {
  $("#t-entries").textContent = formatNumber(t.entries);
  $("#t-bytes").textContent = formatBytes(t.bytes);
  $("#t-pinned").textContent = formatNumber(t.pinned);
  $("#t-hits").textContent = formatNumber(t.hits);
  $("#t-misses").textContent = formatNumber(t.misses_today);
  $("#t-chars").textContent = t.quota
    ? `${formatNumber(t.characters_today)} / ${formatNumber(t.quota)}`
    : formatNumber(t.characters_today);
  $("#t-keys").textContent = formatNumber(t.keys);
}

function renderStats(data) {
  renderTenants(data);
  $("#tenant-stats").hidden = !data.tenant;
  $("#site-stats").hidden = Boolean(data.tenant);
  if (data.tenant) renderTenantStats(data.tenant);
  if (data.history) renderHistory(data.history);
  renderSynthesis(data);
  if (!data.cache) return;
  const c = data.cache;
  $("#s-entries").textContent = formatNumber(c.entries);
  $("#s-bytes").textContent = c.max_bytes
    ? `${formatBytes(c.bytes)} / ${formatBytes(c.max_bytes)}`
    : formatBytes(c.bytes);
  $("#s-hits").textContent = formatNumber(c.hits);
  $("#s-misses").textContent = formatNumber(c.misses);
  $("#s-ratio").textContent = c.hits + c.misses ? `${(c.hit_ratio * 100).toFixed(1)}%` : "—";
  $("#s-evictions").textContent = formatNumber(c.evictions);
  $("#s-saved").textContent = formatSeconds(c.synthesis_seconds_saved);
}

function renderSynthesis(data) {
  const rows = data.synthesis.map((w) => {
    const row = element("tr");
    row.append(
      element("td", { text: w.engine }),
      element("td", { text: w.queue_depth, className: "num" }),
      element("td", { text: w.lanes > 1 ? `${w.running} / ${w.lanes}` : w.busy ? "是" : "否" }),
      element("td", { text: formatNumber(w.completed), className: "num" }),
      element("td", { text: w.rtf === null ? "—" : w.rtf.toFixed(3), className: "num" }),
    );
    return row;
  });
  $("#engines").replaceChildren(...rows);
  $("#stats-updated").textContent = `更新于 ${new Date().toLocaleTimeString("zh-CN", { hour12: false })}`;
  // A warm-up started elsewhere (at startup, or by another admin) shows its progress too;
  // otherwise the latest one shows how it ended.
  const jobs = data.warm_jobs || [];
  const running = jobs.find((j) => j.state === "queued" || j.state === "running");
  if (admin.job || warmCard.dataset.state === "starting") return;
  if (running) {
    trackJob(running.job_id);
  } else if (jobs.length && !warmCard.dataset.job) {
    warmCard.dataset.job = jobs[0].job_id;
    $("#warm-job").hidden = false;
    renderJob(jobs[0]);
  }
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = tokenInput.value.trim();
  if (!token) {
    showMessage(adminMessage, "请输入管理令牌。Enter the admin token.");
    return;
  }
  admin.token = token;
  admin.tenant = ""; // another key may administer another tenant
  sessionStorage.setItem(TOKEN_KEY, token);
  connect();
});

$("#forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  admin.token = "";
  admin.tenant = "";
  admin.connected = false;
  tokenInput.value = "";
  stopStats();
  stopJob();
  adminBody.hidden = true;
  showMessage(adminMessage, "已清除令牌。Token cleared.", "info");
});

// ---- warm-up

warmButton.addEventListener("click", async () => {
  warmButton.disabled = true;
  warmCard.dataset.state = "starting";
  stopJob();
  try {
    // No body: the server warms its configured phrase files.
    const job = await api("/admin/warm", { method: "POST", token: admin.token });
    trackJob(job.job_id);
  } catch (err) {
    warmButton.disabled = false;
    warmCard.dataset.state = "failed";
    $("#warm-job").hidden = false;
    warmFailures.replaceChildren();
    warmStatus.textContent = `无法开始预热：${err.message}`;
    if ([401, 403].includes(err.status) || (err.status === 404 && !err.field)) adminFailed(err);
  }
});

function stopJob() {
  clearTimeout(admin.jobTimer);
  admin.jobTimer = null;
  admin.job = null;
}

function trackJob(jobId) {
  stopJob();
  admin.job = jobId;
  warmCard.dataset.job = jobId;
  warmCard.dataset.state = "queued";
  warmButton.disabled = true;
  $("#warm-job").hidden = false;
  pollJob(jobId);
}

async function pollJob(jobId) {
  let job;
  try {
    job = await api(`/admin/warm/${encodeURIComponent(jobId)}`, { token: admin.token });
  } catch (err) {
    if (admin.job !== jobId) return;
    stopJob();
    warmButton.disabled = false;
    warmCard.dataset.state = "failed";
    warmStatus.textContent = err.status === 404 && err.field ? "预热任务已不存在。" : err.message;
    if (!err.field) adminFailed(err);
    return;
  }
  if (admin.job !== jobId) return;
  renderJob(job);
  if (job.state === "done" || job.state === "failed") {
    stopJob();
    warmButton.disabled = false;
    refreshStats();
    loadPhrases();
  } else {
    admin.jobTimer = setTimeout(() => pollJob(jobId), WARM_EVERY_MS);
  }
}

function renderJob(job) {
  warmCard.dataset.state = job.state;
  warmProgress.max = Math.max(job.total, 1);
  warmProgress.value = job.total ? job.done : job.state === "done" ? 1 : 0;
  const label = { queued: "排队中", running: "进行中", done: "完成", failed: "失败" }[job.state] || job.state;
  const parts = [`${label} ${job.done} / ${job.total}`, `新合成 ${job.synthesized}`];
  if (job.state === "running" && job.eta_seconds !== null) parts.push(`预计剩余 ${Math.ceil(job.eta_seconds)} 秒`);
  if (job.failed.length) parts.push(`失败 ${job.failed.length}`);
  if (job.error) parts.push(job.error);
  if (job.finished) {
    parts.push(`结束于 ${new Date(job.finished * 1000).toLocaleTimeString("zh-CN", { hour12: false })}`);
  }
  warmStatus.textContent = parts.join(" · ");
  warmFailures.replaceChildren(
    ...job.failed.map((f) => element("li", { text: `${f.id}（${f.where}）：${f.reason}` })),
  );
}

// ---- phrases

tenantSelect.addEventListener("change", () => {
  admin.tenant = tenantSelect.value;
  admin.page = 1;
  refreshStats();
  loadPhrases();
});

async function loadPhrases() {
  const params = new URLSearchParams({ page: String(admin.page) });
  if (admin.tenant && !tenantSelect.disabled) params.set("tenant", admin.tenant);
  if (admin.query.q) params.set("q", admin.query.q);
  if (admin.query.tag) params.set("tag", admin.query.tag);
  let data;
  try {
    data = await api(`/admin/phrases?${params}`, { token: admin.token });
  } catch (err) {
    adminFailed(err);
    return;
  }
  admin.pages = Math.max(1, Math.ceil(data.total / data.per_page));
  const body = $("#phrases");
  if (!data.phrases.length) {
    const cell = element("td", { text: "没有匹配的短语。", className: "empty", attrs: { colspan: "4" } });
    const row = element("tr");
    row.append(cell);
    body.replaceChildren(row);
  } else {
    body.replaceChildren(...data.phrases.map(phraseRow));
  }
  for (const phrase of data.phrases) for (const tag of phrase.tags) admin.tags.add(tag);
  $("#tag-list").replaceChildren(
    ...[...admin.tags].sort().map((tag) => element("option", { attrs: { value: tag } })),
  );
  $("#page-info").textContent = `第 ${data.page} / ${admin.pages} 页 · 共 ${data.total} 条`;
  markPlaying(phrasePlayer.paused ? null : admin.loadedKey);
  $("#prev-page").disabled = data.page <= 1;
  $("#next-page").disabled = data.page >= admin.pages;
}

// A text the index does not keep (the store_text setting): only its length is known.
const NOT_KEPT = "—";

function phraseRow(phrase) {
  const row = element("tr", { attrs: { "data-key": phrase.key } });
  const kept = phrase.text !== null;
  const shown = kept ? phrase.text : NOT_KEPT;
  const label = kept ? phrase.text.slice(0, 40) : phrase.phrase_id || phrase.key.slice(0, 8);
  const play = element("button", {
    text: "▶",
    className: "play",
    attrs: { type: "button", "aria-label": `播放 ${label}`, "aria-pressed": "false" },
  });
  play.addEventListener("click", () => playPhrase(phrase));
  const text = element("td", { className: "text" });
  const title = kept ? phrase.text : `文本未保存（${phrase.text_length ?? "?"} 字）text not kept`;
  text.append(element("span", { text: shown, className: "t", attrs: { title } }));
  const meta = element("span", { className: "meta" });
  if (phrase.pinned) meta.append(element("span", { text: "固定", className: "badge", attrs: { title: "pinned" } }));
  const details = [phrase.phrase_id, phrase.tags.join(", "), [phrase.voice, phrase.style].filter(Boolean).join(" / ")];
  meta.append(details.filter(Boolean).join(" · "));
  text.append(meta);
  const playCell = element("td");
  playCell.append(play);
  row.append(
    playCell,
    text,
    element("td", { text: formatNumber(phrase.hits), className: "num" }),
    element("td", { text: `${phrase.duration.toFixed(1)} 秒`, className: "num" }),
  );
  return row;
}

function markPlaying(key) {
  for (const button of document.querySelectorAll("#phrases .play")) {
    const on = key !== null && button.closest("tr").dataset.key === key;
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "❚❚" : "▶";
  }
}

async function playPhrase(phrase) {
  if (admin.loadedKey === phrase.key) {
    if (phrasePlayer.paused) phrasePlayer.play().catch(() => {});
    else phrasePlayer.pause();
    return;
  }
  // Only audio from this server (the API answers a relative /prompts/<key>.wav URL).
  const url = new URL(phrase.audio_url, location.href);
  if (url.origin !== location.origin) return;
  admin.loadedKey = phrase.key;
  phrasePlayer.hidden = false;
  let source;
  try {
    source = await playable(url.pathname + url.search, undefined, admin.token);
  } catch (err) {
    showMessage(adminMessage, err.message);
    return;
  }
  if (phrasePlayer.src.startsWith("blob:")) URL.revokeObjectURL(phrasePlayer.src);
  phrasePlayer.src = source;
  phrasePlayer.play().catch(() => {});
  waveformOf(phraseWave, phrasePlayer, source);
}

phrasePlayer.addEventListener("play", () => markPlaying(admin.loadedKey));
phrasePlayer.addEventListener("pause", () => markPlaying(null));
phrasePlayer.addEventListener("emptied", () => markPlaying(null));

$("#phrase-search").addEventListener("submit", (event) => {
  event.preventDefault();
  admin.query = { q: $("#q").value.trim(), tag: $("#tag").value.trim() };
  admin.page = 1;
  loadPhrases();
});
$("#prev-page").addEventListener("click", () => {
  admin.page = Math.max(1, admin.page - 1);
  loadPhrases();
});
$("#next-page").addEventListener("click", () => {
  admin.page = Math.min(admin.pages, admin.page + 1);
  loadPhrases();
});

// ---- purge a text

const purgeForm = $("#purge-form");
const purgeVoice = $("#purge-voice");
const purgeStatus = $("#purge-status");

purgeForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("#purge-text").value;
  if (!text.trim()) return;
  const button = purgeForm.querySelector("button[type=submit]");
  button.disabled = true;
  purgeStatus.textContent = "删除中…";
  try {
    // The tenant chosen: its prompts of the text; the whole site: every tenant's.
    const json = { text, voice: purgeVoice.value };
    if (admin.tenant && !tenantSelect.disabled) json.tenant = admin.tenant;
    const purged = await api("/admin/cache", { method: "DELETE", token: admin.token, json });
    purgeStatus.textContent = `已删除 ${purged.prompts} 条，${formatBytes(purged.bytes)}`;
    $("#purge-text").value = "";  // the text leaves the page too
    refreshStats();
    loadPhrases();
  } catch (err) {
    purgeStatus.textContent = `无法删除：${err.message}`;
    if ([401, 403].includes(err.status)) adminFailed(err);
  } finally {
    button.disabled = false;
  }
});

// ---------------------------------------------------------------- start

selectTab(location.hash === "#admin" ? tabs[1] : tabs[0], { remember: false });
loadVoices();
