'use strict';
// The acg2vec page: plain DOM code over the public API, no build step and no external requests.

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(node, rest);
  if (dataset) Object.assign(node.dataset, dataset);
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
};

// pix2score bucket labels (ACG2vec's Discretization boundaries).
const BUCKETS = {
  bookmarkPredict: ['0-10', '10-30', '30-50', '50-70', '70-100', '100-130', '130-170', '170-220', '220-300',
    '300-400', '400-550', '550-800', '800-1300', '1300-2700', '2700+'],
  viewPredict: ['0-500', '500-700', '700-1000', '1000-1500', '1500-2000', '2000-2500', '2500-3000', '3000-4000',
    '4000-5000', '5000-6500', '6500-8500', '8500-12000', '12000-19000', '19000-35000', '35000+'],
  sanityPredict: ['0-2', '2-4', '4-6', '6-7', '7+'],
};
const HEAD_NAMES = { bookmarkPredict: 'Bookmarks', viewPredict: 'Views', sanityPredict: 'Sanity level' };
const CATEGORIES = ['character', 'general', 'copyright', 'artist', 'meta'];
const SLIDER_MIN = 0.01;
const MAX_BARS = 150; // per category; a full tagger answers thousands of low scores
const SIMILAR_K = 12;
const wide = window.matchMedia('(min-width: 641px)');

// What each task is for and which pack adds it, for the "not installed" explanations.
const TASKS = {
  tagger: { what: 'tagging', pack: 'a tagger pack (DeepDanbooru or a WD tagger)' },
  classifier: { what: 'rating', pack: 'a classifier pack (e.g. nsfw-mobilenet-v2 from scripts/install-packs.sh)' },
  scores: { what: 'popularity (pix2score)', pack: 'a pix2score pack' },
  image_embedding: { what: 'semantic similarity', pack: 'an image-embedding pack (e.g. illust2vec)' },
  clip_text: { what: 'text search', pack: 'a CLIP pack (clip_text + clip_image)' },
  text_embedding: { what: 'tag suggestions', pack: 'an acgvoc2vec pack (text_embedding)' },
};

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// The key (servers with --api-key-file) lives in sessionStorage: it survives a reload of this
// tab but is not written to disk for other visitors of a shared browser profile.
function apiKey() { return sessionStorage.getItem('acg2vec-api-key') || ''; }

async function api(path, options = {}) {
  let res;
  const key = apiKey();
  if (key) options = { ...options, headers: { ...(options.headers || {}), 'X-API-Key': key } };
  try {
    res = await fetch(path, options);
  } catch (e) {
    throw new ApiError(0, 'The server cannot be reached.');
  }
  const type = res.headers.get('Content-Type') || '';
  let body = null;
  if (type.includes('application/json')) {
    try { body = await res.json(); } catch (e) { body = null; }
  }
  if (res.status === 401) {
    const box = $('#key-box');
    if (box) box.open = true;
    throw new ApiError(401, key ? 'The server refused this API key.' : 'This server needs an API key: enter it under "API key" at the top.');
  }
  if (!res.ok) {
    const msg = body && (body.message || body.error);
    throw new ApiError(res.status, typeof msg === 'string' && msg ? msg : `The server answered HTTP ${res.status}.`);
  }
  return body;
}

function banner(text, isError = false) {
  const b = $('#banner');
  b.hidden = !text;
  b.textContent = text || '';
  b.className = isError ? 'error' : '';
}

function bar(label, value, title) {
  const pct = Math.max(0, Math.min(1, value)) * 100;
  const node = el('div', { className: 'bar', title: title || `${label}: ${value.toFixed(3)}` },
    el('span', { className: 'fill' }), el('span', { className: 'label', textContent: label }),
    el('span', { className: 'value', textContent: value.toFixed(2) }));
  node.firstChild.style.width = `${pct}%`;
  return node;
}

function note(text, kind = '') {
  return el('p', { className: kind ? `hint ${kind}` : 'hint', textContent: text });
}

let health = { models: {} };
const modelsFor = (task) => Object.entries(health.models || {}).filter(([, m]) => m.task === task);
const readyFor = (task) => modelsFor(task).some(([, m]) => m.state === 'ready');

/** Explains why a task cannot run: loading, failed, or which pack to install. */
function unavailableText(task) {
  const t = TASKS[task] || { what: task, pack: `a "${task}" pack` };
  const packs = modelsFor(task);
  if (packs.some(([, m]) => m.state === 'loading')) return `The ${t.what} model is still loading; try again shortly.`;
  if (packs.length && packs.every(([, m]) => m.state === 'failed')) {
    return `The ${t.what} model failed to load: ${packs[0][1].error || 'see the server log'}.`;
  }
  return `No ${t.what} model is installed. Install ${t.pack} in the models directory and restart the server (see docs/model-packs.md).`;
}

// An item's display name: its source file name when it has one, else its id.
function itemName(hit) {
  const src = typeof hit.source === 'string' ? hit.source.split(/[\\/]/).pop() : '';
  return src || String(hit.id);
}

function tile(hit, onMore) {
  const name = itemName(hit);
  const img = el('img', { src: hit.thumbnail, alt: name, width: 128, height: 128 });
  img.addEventListener('error', () => img.classList.add('missing'), { once: true });
  const meta = el('div', { className: 'meta' }, el('span', { className: 'name', textContent: name, title: `${name} (id ${hit.id})` }));
  if (typeof hit.score === 'number') meta.append(el('span', { className: 'score', textContent: hit.score.toFixed(3), title: 'similarity' }));
  const t = el('div', { className: 'tile', dataset: { id: String(hit.id) } }, img, meta);
  if (onMore) {
    t.append(el('button', {
      className: 'small', type: 'button', textContent: 'More like this', onclick: () => onMore(hit),
    }));
    t.lastChild.setAttribute('aria-label', `More like ${name}`);
  }
  return t;
}

function renderHits(container, hits, onMore, emptyText) {
  container.replaceChildren();
  if (!hits.length) { container.append(note(emptyText || 'No similar items yet.')); return; }
  for (const h of hits) container.append(tile(h, onMore));
}

function searchError(e) {
  if (e.status === 503 && /clip/i.test(e.message)) return unavailableText('clip_text');
  return e.message;
}

/** Replaces a grid with the items nearest to a collection item. */
async function moreLikeThis(container, hit, caption) {
  container.replaceChildren(note('Searching…'));
  if (caption) caption.textContent = `Items like ${itemName(hit)}`;
  try {
    const space = $('#space').value || undefined;
    const r = await api('/v1/search', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ id: hit.id, k: SIMILAR_K, space }) });
    renderHits(container, r.data.hits, (h) => moreLikeThis(container, h, caption), 'Nothing similar to that item.');
  } catch (e) { container.replaceChildren(note(searchError(e), 'error')); }
}

function tagGroup(cat, list, start) {
  const slider = el('input', { type: 'range', min: SLIDER_MIN, max: 1, step: 0.01, value: start });
  const shown = el('output', { textContent: Number(start).toFixed(2) });
  const count = el('span', { className: 'count' });
  const bars = el('div', { className: 'tag-list' });
  const id = `t${Math.random().toString(36).slice(2, 9)}`;
  slider.id = id;
  const group = el('div', { className: 'cat', dataset: { category: cat } },
    el('div', { className: 'cat-head' }, el('label', { htmlFor: id }, `${cat} ≥ `, shown), slider, count), bars);
  const draw = () => {
    const t = Number(slider.value);
    shown.textContent = t.toFixed(2);
    const above = list.filter((x) => x.score >= t);
    bars.replaceChildren(...above.slice(0, MAX_BARS).map((x) => bar(x.name, x.score)));
    if (above.length > MAX_BARS) bars.append(note(`…and ${above.length - MAX_BARS} more; raise the threshold.`));
    if (!above.length) bars.append(note('No tag above this threshold.'));
    count.textContent = `${above.length} of ${list.length}`;
  };
  slider.setAttribute('aria-label', `${cat} threshold`);
  slider.addEventListener('input', draw);
  draw();
  return group;
}

function renderTags(body, data) {
  body.replaceChildren();
  const tags = data.tags || {};
  if (data.rating) {
    body.append(el('p', { className: 'rating' }, el('strong', { textContent: 'Rating: ' }),
      `${data.rating.name.replace(/^rating:/, '')} (${data.rating.score.toFixed(2)})`));
  } else if (tags.rating && tags.rating.length) {
    body.append(tagGroup('rating', tags.rating, (data.thresholds && data.thresholds.rating) || 0.5));
  }
  const cats = CATEGORIES.filter((c) => tags[c] && tags[c].length);
  for (const cat of cats) {
    const start = Math.max(SLIDER_MIN, (data.thresholds && data.thresholds[cat]) || 0.5);
    body.append(tagGroup(cat, tags[cat], start));
  }
  if (!cats.length) body.append(note('No tags.'));
  if (data.model) body.append(note(`model: ${data.model}`));
}

// Errors that concern the uploaded file itself rather than one model: shown once per card.
const isImageError = (e) => e.status === 400 || e.status === 413 || e.status === 415;

async function analyse(file) {
  const node = $('#result-tpl').content.firstElementChild.cloneNode(true);
  const name = file.name || 'pasted image';
  const url = URL.createObjectURL(file);
  const preview = $('.preview img', node);
  preview.addEventListener('error', () => preview.replaceWith(note('No preview for this file.')), { once: true });
  preview.src = url;
  preview.alt = name;
  $('.file-name', node).textContent = name;
  $('.close', node).addEventListener('click', () => { URL.revokeObjectURL(url); node.remove(); });
  $('.close', node).setAttribute('aria-label', `Close ${name}`);
  $('#results').prepend(node);
  const form = () => { const f = new FormData(); f.append('image', file, name); return f; };
  const panel = (cls) => $(`.panel.${cls} .body`, node);
  let failed = false;
  const fail = (e) => {
    if (failed) return;
    failed = true;
    node.classList.add('failed');
    $('.panels', node).replaceWith(el('p', { className: 'error-box', role: 'alert', textContent: `Cannot analyse ${name}: ${e.message}` }));
  };
  // Runs one panel's request; model-specific states stay in the panel, file errors fail the card.
  const run = async (cls, task, request) => {
    const body = panel(cls);
    body.replaceChildren(note('Working…'));
    try {
      await request(body);
    } catch (e) {
      if (isImageError(e)) fail(e);
      else if (!failed) body.replaceChildren(note(e.status === 503 ? unavailableText(task) : e.message, e.status === 503 ? 'notice' : 'error'));
    }
  };

  const add = $('.add', node);
  add.addEventListener('click', async () => {
    add.disabled = true;
    add.textContent = 'Adding…';
    const f = new FormData();
    f.append('file', file, name);
    f.append('source', name);
    try {
      const r = await api('/v1/items', { method: 'POST', body: f });
      add.textContent = 'Added to the collection';
      add.title = `item ${r.data.id}`;
      refreshCollection();
    } catch (e) {
      add.disabled = false;
      add.textContent = 'Add to collection';
      $('.actions', node).append(note(e.message, 'error'));
    }
  });

  await Promise.all([
    run('tags', 'tagger', async (body) => {
      const f = form();
      f.append('all', 'true'); // every score, so sliders work without a new request
      renderTags(body, (await api('/v1/tag', { method: 'POST', body: f })).data);
    }),
    run('classify', 'classifier', async (body) => {
      const r = (await api('/v1/classify', { method: 'POST', body: form() })).data;
      body.replaceChildren(...r.classes.map((c) => bar(c.name, c.score)), note(`model: ${r.model}`));
    }),
    run('scores', 'scores', async (body) => {
      if (!modelsFor('scores').length) { $('.panel.scores', node).hidden = true; return; }
      const r = (await api('/pix2score', { method: 'POST', body: form() })).data;
      body.replaceChildren();
      // JSON objects arrive in key order; show the seed's head order first.
      const order = Object.keys(HEAD_NAMES);
      const rank = (k) => (order.includes(k) ? order.indexOf(k) : order.length);
      for (const [head, probs] of Object.entries(r).sort(([a], [b]) => rank(a) - rank(b))) {
        const best = probs.indexOf(Math.max(...probs));
        const labels = BUCKETS[head] || probs.map((_, i) => String(i));
        // Collapsed on narrow screens, where 35 bars would push everything else far down.
        const group = el('details', { className: 'score-head', dataset: { head }, open: wide.matches },
          el('summary', { textContent: `${HEAD_NAMES[head] || head}: ${labels[best]}` }));
        probs.forEach((v, i) => { if (v >= 0.02 || i === best) group.append(bar(labels[i], v)); });
        body.append(group);
      }
    }),
    run('similar', 'image_embedding', async (body) => {
      const f = form();
      f.append('k', SIMILAR_K);
      if ($('#space').value) f.append('space', $('#space').value);
      const r = await api('/v1/search', { method: 'POST', body: f });
      const caption = $('.panel.similar .caption', node);
      caption.textContent = `Nearest by ${r.data.space === 'signature' ? 'perceptual signature' : r.data.space}`;
      renderHits(body, r.data.hits, (h) => moreLikeThis(body, h, caption), 'The collection is empty or nothing is similar.');
    }),
  ]);
  node.classList.add('done');
}

function handleFiles(files) {
  const list = [...files];
  const images = list.filter((f) => !f.type || f.type.startsWith('image/'));
  if (!images.length) { banner(`${list.length > 1 ? 'These are not image files' : 'That is not an image file'}: choose a JPEG, PNG, WebP, GIF or BMP.`, true); return; }
  banner(list.length > images.length ? `Skipped ${list.length - images.length} file(s) that are not images.` : '');
  for (const f of images) analyse(f);
}

function setupDrop() {
  const drop = $('#drop');
  const input = $('#file');
  drop.addEventListener('click', (e) => { if (e.target.tagName !== 'LABEL' && e.target !== input) input.click(); });
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click(); }
  });
  input.addEventListener('change', () => { handleFiles(input.files); input.value = ''; });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); handleFiles(e.dataTransfer.files); });
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData ? e.clipboardData.files : [])];
    if (files.length) handleFiles(files);
  });
}

function setupText() {
  const form = $('#text-form');
  const q = $('#text-q');
  const out = $('#text-results');
  const list = $('#suggest');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!q.value.trim()) return;
    out.replaceChildren(note('Searching…'));
    try {
      const r = await api('/v1/search', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ text: q.value.trim(), k: 24 }) });
      renderHits(out, r.data.hits, (h) => moreLikeThis(out, h), 'No match.');
    } catch (err) {
      if (err.status === 503) {
        // The explanation moves from the hint into the results, so it is not shown twice.
        $('#text-help').textContent = '';
        out.replaceChildren(note(unavailableText('clip_text'), 'notice'));
      } else {
        out.replaceChildren(note(err.message, 'error'));
      }
    }
  });
  let timer = 0;
  let seq = 0;
  q.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const word = q.value.split(',').pop().trim();
      if (!word || !readyFor('text_embedding')) { list.replaceChildren(); return; }
      const mine = ++seq;
      try {
        const r = await api(`/acgvoc2vec?tag=${encodeURIComponent(word)}`);
        if (mine !== seq) return;
        const names = (Array.isArray(r && r.data) ? r.data : []).map((t) => (typeof t === 'string' ? t : t && t.name)).filter(Boolean);
        list.replaceChildren(...names.slice(0, 12).map((t) => el('li', {}, el('button', {
          type: 'button', textContent: t,
          onclick: () => {
            const parts = q.value.split(',');
            parts[parts.length - 1] = ` ${t}`;
            q.value = parts.join(',').replace(/^ /, '');
            q.focus();
          },
        }))));
      } catch (err) { if (mine === seq) list.replaceChildren(); }
    }, 250);
  });
}

function updateTextHelp() {
  const help = $('#text-help');
  const clip = readyFor('clip_text');
  help.textContent = clip ? 'Describe an image in English, e.g. "1girl, blue hair, school uniform".' : unavailableText('clip_text');
  help.className = clip ? 'hint' : 'hint notice';
  if (!readyFor('text_embedding') && clip) help.textContent += ` Tag suggestions need ${TASKS.text_embedding.pack}.`;
}

let lastCount = null;

async function refreshCollection() {
  try {
    const [stats, recent] = await Promise.all([api('/v1/stats'), api('/v1/items?limit=12')]);
    const spaces = Object.entries(stats.data.spaces || {});
    const items = stats.data.items;
    const growing = lastCount !== null && items > lastCount;
    $('#count-items').textContent = String(items);
    $('#count-spaces').textContent = spaces.map(([n, s]) => `${n === 'signature' ? 'signature' : n} (${s.size})`).join(', ') || 'none';
    $('#ingest').textContent = growing ? `Ingesting: ${items - lastCount} new item(s) since the last check.` : '';
    const changed = items !== lastCount;
    lastCount = items;
    // Re-rendering only on change keeps a "more like this" view in the recent grid in place.
    if (changed) renderHits($('#recent'), recent.data || [], (h) => moreLikeThis($('#recent'), h, $('#recent-caption')),
      'No items yet: ingest a folder with "acg2vec ingest DIR" or use "Add to collection" on an analysed image.');
    if (changed) $('#recent-caption').textContent = 'Recent items';
    const select = $('#space');
    const current = select.value;
    for (const [name] of spaces) {
      if (name === 'signature' || [...select.options].some((o) => o.value === name)) continue;
      select.append(el('option', { value: name, textContent: `semantic (${name})` }));
    }
    select.value = current;
    return growing;
  } catch (e) {
    $('#count-items').textContent = '–';
    $('#ingest').textContent = e.status === 503 ? 'The collection is still loading.' : e.message;
    return false;
  }
}

function renderModels() {
  const rows = Object.entries(health.models || {}).map(([name, m]) => el('tr', {},
    el('td', { textContent: name }), el('td', { textContent: m.task }),
    el('td', { className: `state-${m.state}`, textContent: m.state + (m.error ? `: ${m.error}` : '') })));
  if (!rows.length) rows.push(el('tr', {}, el('td', { colSpan: 3, textContent: 'No model pack installed.' })));
  $('#models tbody').replaceChildren(...rows);
  const missing = Object.keys(TASKS).filter((t) => !modelsFor(t).length);
  $('#missing').replaceChildren(...missing.map((t) => el('li', {}, `${TASKS[t].what}: install ${TASKS[t].pack}`)));
  $('#missing-h').hidden = !missing.length;
}

async function refreshHealth() {
  try {
    const res = await fetch('/health');
    health = await res.json();
    renderModels();
    updateTextHelp();
    if (res.status === 503) {
      banner('Models are still loading… results appear once they are ready.');
      setTimeout(refreshHealth, 1500);
    } else {
      banner('');
    }
  } catch (e) {
    banner('The server cannot be reached.', true);
    setTimeout(refreshHealth, 5000);
  }
}

function setupKey() {
  const input = $('#api-key');
  input.value = apiKey();
  input.addEventListener('change', () => {
    const v = input.value.trim();
    if (v) sessionStorage.setItem('acg2vec-api-key', v); else sessionStorage.removeItem('acg2vec-api-key');
    refreshCollection();
  });
}

async function main() {
  setupKey();
  setupDrop();
  setupText();
  await refreshHealth();
  await refreshCollection();
  // Shows the collection growing while an ingest runs elsewhere; quiet when the tab is hidden.
  setInterval(() => { if (!document.hidden) refreshCollection(); }, 5000);
}

main();
