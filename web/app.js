'use strict';
// The acg2vec page: plain DOM code over the public API, no build step and no external requests.

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
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
const TAG_FLOOR = 0.05; // tags are fetched down to this score so sliders work without a new request

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  let res;
  try {
    res = await fetch(path, options);
  } catch (e) {
    throw new ApiError(0, 'The server cannot be reached.');
  }
  const type = res.headers.get('Content-Type') || '';
  const body = type.includes('application/json') ? await res.json() : null;
  if (!res.ok) throw new ApiError(res.status, (body && body.message) || `HTTP ${res.status}`);
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

function note(text, isError = false) {
  return el('p', { className: isError ? 'hint error' : 'hint', textContent: text });
}

let health = { models: {} };
const modelsFor = (task) => Object.entries(health.models || {}).filter(([, m]) => m.task === task);

function unavailableText(task, what) {
  const packs = modelsFor(task);
  if (packs.some(([, m]) => m.state === 'loading')) return `The ${what} model is still loading.`;
  if (packs.length && packs.every(([, m]) => m.state === 'failed')) return `The ${what} model failed to load: ${packs[0][1].error}`;
  return `No ${what} model is installed. Add a pack with "task": "${task}" to the models directory (see docs/model-packs.md).`;
}

function tile(hit, onMore) {
  const img = el('img', { src: hit.thumbnail, alt: `item ${hit.id}`, loading: 'lazy' });
  const meta = el('div', { className: 'meta' }, el('span', { className: 'id', textContent: String(hit.id), title: String(hit.id) }));
  if (typeof hit.score === 'number') meta.append(el('span', { textContent: hit.score.toFixed(3), title: 'similarity' }));
  const t = el('div', { className: 'tile' }, img, meta);
  if (onMore) {
    t.append(el('button', { className: 'small', type: 'button', textContent: 'More like this', onclick: () => onMore(hit) }));
  }
  return t;
}

function renderHits(container, hits, onMore, emptyText) {
  container.replaceChildren();
  if (!hits.length) { container.append(note(emptyText || 'No similar items yet.')); return; }
  for (const h of hits) container.append(tile(h, onMore));
}

async function moreLikeThis(container, hit) {
  container.replaceChildren(note('Searching…'));
  try {
    const r = await api('/v1/search', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ id: hit.id, k: 12, space: $('#space').value || undefined }) });
    renderHits(container, r.data.hits, (h) => moreLikeThis(container, h), 'Nothing similar to that item.');
  } catch (e) { container.replaceChildren(note(e.message, true)); }
}

function renderTags(body, data) {
  body.replaceChildren();
  if (data.rating) body.append(el('p', {}, el('strong', { textContent: 'Rating: ' }), `${data.rating.name} (${data.rating.score.toFixed(2)})`));
  const cats = ['character', 'general', 'copyright', 'artist', 'meta'].filter((c) => data.tags[c]);
  for (const cat of cats) {
    const list = data.tags[cat];
    const start = Math.max(TAG_FLOOR, (data.thresholds && data.thresholds[cat]) || 0.5);
    const slider = el('input', { type: 'range', min: TAG_FLOOR, max: 1, step: 0.01, value: start });
    const shown = el('span', { textContent: Number(start).toFixed(2) });
    const bars = el('div', { className: 'tag-list' });
    const group = el('div', { className: 'cat', dataset: { category: cat } },
      el('label', {}, `${cat} ≥ `, shown, slider), bars);
    const draw = () => {
      const t = Number(slider.value);
      shown.textContent = t.toFixed(2);
      bars.replaceChildren(...list.filter((x) => x.score >= t).map((x) => bar(x.name, x.score)));
      if (!bars.children.length) bars.append(note('No tag above this threshold.'));
    };
    slider.setAttribute('aria-label', `${cat} threshold`);
    slider.addEventListener('input', draw);
    draw();
    body.append(group);
  }
  if (!cats.length) body.append(note('No tags.'));
}

async function analyse(file) {
  const node = $('#result-tpl').content.firstElementChild.cloneNode(true);
  const url = URL.createObjectURL(file);
  $('.preview img', node).src = url;
  $('.preview img', node).alt = file.name || 'uploaded image';
  $('#results').prepend(node);
  const form = () => { const f = new FormData(); f.append('image', file, file.name || 'image'); return f; };
  const panel = (cls) => $(`.panel.${cls} .body`, node);

  const tags = (async () => {
    const body = panel('tags');
    body.replaceChildren(note('Tagging…'));
    const f = form(); f.append('threshold_general', TAG_FLOOR); f.append('threshold_character', TAG_FLOOR);
    try { renderTags(body, (await api('/v1/tag', { method: 'POST', body: f })).data); }
    catch (e) { body.replaceChildren(note(e.status === 503 ? unavailableText('tagger', 'tagging') : e.message, e.status !== 503)); }
  })();
  const classify = (async () => {
    const body = panel('classify');
    try {
      const r = (await api('/v1/classify', { method: 'POST', body: form() })).data;
      body.replaceChildren(...r.classes.map((c) => bar(c.name, c.score)), note(`model: ${r.model}`));
    } catch (e) { body.replaceChildren(note(e.status === 503 ? unavailableText('classifier', 'rating') : e.message, e.status !== 503)); }
  })();
  const scores = (async () => {
    const p = $('.panel.scores', node);
    if (!modelsFor('scores').length) { p.hidden = true; return; }
    const body = panel('scores');
    try {
      const r = (await api('/pix2score', { method: 'POST', body: form() })).data;
      body.replaceChildren();
      for (const [head, probs] of Object.entries(r)) {
        const best = probs.indexOf(Math.max(...probs));
        const labels = BUCKETS[head] || probs.map((_, i) => String(i));
        body.append(el('h4', { textContent: `${HEAD_NAMES[head] || head}: ${labels[best]}` }));
        probs.forEach((v, i) => { if (v >= 0.02 || i === best) body.append(bar(labels[i], v)); });
      }
    } catch (e) { body.replaceChildren(note(e.message, true)); }
  })();
  const similar = (async () => {
    const body = panel('similar');
    body.replaceChildren(note('Searching…'));
    const f = form(); f.append('k', 12);
    if ($('#space').value) f.append('space', $('#space').value);
    try {
      const r = await api('/v1/search', { method: 'POST', body: f });
      renderHits(body, r.data.hits, (h) => moreLikeThis(body, h), 'The collection is empty or nothing is similar.');
    } catch (e) { body.replaceChildren(note(e.message, true)); }
  })();
  await Promise.all([tags, classify, scores, similar]);
}

function handleFiles(files) {
  const images = [...files].filter((f) => !f.type || f.type.startsWith('image/'));
  if (!images.length) { banner('That is not an image file.', true); return; }
  banner('');
  for (const f of images) analyse(f);
}

function setupDrop() {
  const drop = $('#drop');
  const input = $('#file');
  drop.addEventListener('click', (e) => { if (e.target === drop || e.target.tagName === 'P') input.click(); });
  drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click(); } });
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
  const help = $('#text-help');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!q.value.trim()) return;
    out.replaceChildren(note('Searching…'));
    try {
      const r = await api('/v1/search', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ text: q.value.trim(), k: 24 }) });
      renderHits(out, r.data.hits, (h) => moreLikeThis(out, h), 'No match.');
    } catch (err) {
      out.replaceChildren(note(err.status === 503 ? unavailableText('clip_text', 'CLIP text') : err.message, err.status !== 503));
    }
  });
  let timer = 0;
  let seq = 0;
  q.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const word = q.value.split(',').pop().trim();
      const list = $('#suggest');
      if (!word || !modelsFor('text_embedding').length) { list.replaceChildren(); return; }
      const mine = ++seq;
      try {
        const r = await api(`/acgvoc2vec?tag=${encodeURIComponent(word)}`);
        if (mine !== seq) return;
        list.replaceChildren(...(r.data || []).slice(0, 12).map((t) => el('li', {}, el('button', {
          type: 'button', textContent: t,
          onclick: () => { const parts = q.value.split(','); parts[parts.length - 1] = ` ${t}`; q.value = parts.join(',').replace(/^ /, ''); q.focus(); },
        }))));
      } catch (err) { list.replaceChildren(); help.textContent = err.message; }
    }, 250);
  });
  help.textContent = modelsFor('clip_text').length ? 'Describe an image in English.'
    : 'Text search needs a CLIP pack (task "clip_text"); tag suggestions need an acgvoc2vec pack.';
}

async function refreshCollection() {
  try {
    const [stats, recent] = await Promise.all([api('/v1/stats'), api('/v1/items?limit=12')]);
    const spaces = Object.entries(stats.data.spaces || {}).map(([n, s]) => `${n} (${s.size})`).join(', ');
    $('#counts').textContent = `${stats.data.items} items · vector spaces: ${spaces || 'none'}`;
    renderHits($('#recent'), recent.data || [], (h) => moreLikeThis($('#recent'), h), 'No items yet: ingest a folder with `acg2vec ingest DIR`.');
    const select = $('#space');
    const current = select.value;
    for (const name of Object.keys(stats.data.spaces || {})) {
      if (name === 'signature' || [...select.options].some((o) => o.value === name)) continue;
      select.append(el('option', { value: name, textContent: `semantic (${name})` }));
    }
    select.value = current;
  } catch (e) {
    $('#counts').textContent = e.status === 404 ? 'This server has no collection.' : e.message;
  }
}

async function refreshHealth() {
  try {
    const res = await fetch('/health');
    health = await res.json();
    const rows = Object.entries(health.models || {}).map(([name, m]) => el('tr', {},
      el('td', { textContent: name }), el('td', { textContent: m.task }),
      el('td', { className: `state-${m.state}`, textContent: m.state + (m.error ? `: ${m.error}` : '') })));
    $('#models tbody').replaceChildren(...rows);
    if (!rows.length) $('#models tbody').append(el('tr', {}, el('td', { colSpan: 3, textContent: 'No model pack installed.' })));
    if (res.status === 503) { banner('Models are still loading…'); setTimeout(refreshHealth, 1500); } else banner('');
  } catch (e) {
    banner('The server cannot be reached.', true);
  }
}

async function main() {
  setupDrop();
  await refreshHealth();
  setupText();
  await refreshCollection();
}

main();
