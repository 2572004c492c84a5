'use strict';
// The collection browser (GET /v1/items with filters, GET /v1/tags), the item page and the
// Duplicates view (GET /v1/duplicates, POST /v1/duplicates/{group}/resolve). Uses app.js's helpers.
(() => {
  if (!$('#browse')) return;
  const state = { page: 0, like: null, total: 0, seq: 0 };
  const enc = encodeURIComponent;
  const itemPath = (id) => `/v1/items/${enc(String(id))}`;
  const num = (s) => (s === '' || s === null ? null : Number(s));

  // ---- tag autocomplete: a combobox over the word being typed in a comma-separated list ----
  const list = $('#b-suggest');
  let active = null;
  let pick = -1;
  let seq = 0;
  const options = () => [...list.children];
  function closeSuggest() {
    list.hidden = true;
    list.replaceChildren();
    pick = -1;
    if (active) { active.setAttribute('aria-expanded', 'false'); active.removeAttribute('aria-activedescendant'); }
  }
  function accept(name) {
    const parts = active.value.split(',');
    parts[parts.length - 1] = parts.length > 1 ? ` ${name}` : name;
    active.value = `${parts.join(',')}, `;
    closeSuggest();
    active.focus();
  }
  function mark(n) {
    const opts = options();
    if (!opts.length) return;
    pick = (n + opts.length) % opts.length;
    opts.forEach((o, i) => o.setAttribute('aria-selected', String(i === pick)));
    active.setAttribute('aria-activedescendant', opts[pick].id);
  }
  async function suggest(input) {
    const word = input.value.split(',').pop().trim();
    const mine = ++seq;
    if (!word) { closeSuggest(); return; }
    try {
      const r = await api(`/v1/tags?prefix=${enc(word)}&limit=10`);
      if (mine !== seq || document.activeElement !== input) return;
      list.replaceChildren(...r.data.map((t, i) => {
        const li = el('li', { id: `b-opt-${i}`, role: 'option', dataset: { name: t.name } },
          el('span', { textContent: t.name }), el('span', { className: 'count', textContent: String(t.count) }));
        li.setAttribute('aria-selected', 'false');
        li.addEventListener('mousedown', (e) => { e.preventDefault(); accept(t.name); });
        return li;
      }));
      if (!r.data.length) { closeSuggest(); return; }
      // The list sits under the field being typed in.
      const box = input.getBoundingClientRect();
      const host = $('#browse').getBoundingClientRect();
      list.style.left = `${box.left - host.left}px`;
      list.style.top = `${box.bottom - host.top}px`;
      list.style.minWidth = `${box.width}px`;
      list.hidden = false;
      input.setAttribute('aria-expanded', 'true');
    } catch (e) { closeSuggest(); }
  }
  for (const input of document.querySelectorAll('#browse-form input[data-tags]')) {
    input.setAttribute('role', 'combobox');
    input.setAttribute('aria-autocomplete', 'list');
    input.setAttribute('aria-controls', 'b-suggest');
    input.setAttribute('aria-expanded', 'false');
    let timer = 0;
    input.addEventListener('input', () => { active = input; clearTimeout(timer); timer = setTimeout(() => suggest(input), 150); });
    input.addEventListener('blur', () => setTimeout(() => { if (active === input) closeSuggest(); }, 100));
    input.addEventListener('keydown', (e) => {
      if (list.hidden || active !== input) return;
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') { e.preventDefault(); mark(pick + (e.key === 'ArrowDown' ? 1 : -1)); }
      else if ((e.key === 'Enter' || e.key === 'Tab') && pick >= 0) { e.preventDefault(); accept(options()[pick].dataset.name); }
      else if (e.key === 'Escape') { e.preventDefault(); closeSuggest(); }
    });
  }

  // ---- the grid ----
  const tags = (id) => $(id).value.split(',').map((t) => t.trim()).filter(Boolean).join(',');
  function query() {
    const size = Number($('#b-size').value);
    const p = new URLSearchParams({ offset: String(state.page * size), limit: String(size) });
    const add = (k, v) => { if (v !== '' && v !== null) p.set(k, v); };
    add('tags', tags('#b-all'));
    add('any', tags('#b-any'));
    add('none', tags('#b-none'));
    add('rating', $('#b-rating').value);
    const score = $('#b-score').value;
    if (score) { add('score', score); add('score_min', $('#b-min').value); add('score_max', $('#b-max').value); }
    const sort = $('#b-sort').value;
    if (sort === 'similarity' && state.like) p.set('like', state.like.id);
    else {
      p.set('sort', sort === 'score' && score ? 'score' : 'date');
      p.set('order', $('#b-order').value);
    }
    return p;
  }

  function gridTile(item) {
    const name = itemName(item);
    const img = el('img', { src: item.thumbnail, alt: '', width: 128, height: 128 });
    img.addEventListener('error', () => img.classList.add('missing'), { once: true });
    const open = el('button', { type: 'button', className: 'open', onclick: () => openItem(item.id) }, img,
      el('span', { className: 'name', textContent: name }));
    open.setAttribute('aria-label', `Open ${name}`);
    const meta = el('div', { className: 'meta' });
    if (typeof item.score === 'number') meta.append(el('span', { className: 'score', textContent: item.score.toFixed(3), title: 'similarity' }));
    return el('div', { className: 'tile', dataset: { id: String(item.id) } }, open, meta);
  }

  async function load() {
    const grid = $('#browse-grid');
    const size = Number($('#b-size').value);
    const status = $('#browse-status');
    status.textContent = 'Loading…';
    const q = query();
    const mine = ++state.seq;
    try {
      const r = await api(`/v1/items?${q}`);
      if (mine !== state.seq) return; // a newer request owns the grid
      state.total = r.total;
      grid.replaceChildren(...r.data.map(gridTile));
      grid.dataset.query = q.toString(); // what is shown, for scripts and tests
      const pages = Math.max(1, Math.ceil(r.total / size));
      status.textContent = r.total ? `${r.total} item${r.total === 1 ? '' : 's'} match.` : 'No item matches these filters.';
      $('#b-page').textContent = `Page ${state.page + 1} of ${pages}`;
      $('#b-prev').disabled = state.page === 0;
      $('#b-next').disabled = (state.page + 1) * size >= r.total;
    } catch (e) {
      if (mine !== state.seq) return;
      status.textContent = e.message;
      status.className = 'hint error';
      return;
    }
    status.className = 'hint';
  }

  function showLike() {
    const p = $('#b-like');
    p.hidden = !state.like;
    if (!state.like) return;
    p.replaceChildren(`Similar to ${state.like.name}. `, el('button', {
      type: 'button', className: 'small ghost', textContent: 'Stop', onclick: () => { state.like = null; $('#b-sort').value = 'date'; showLike(); state.page = 0; load(); },
    }));
  }

  $('#browse-form').addEventListener('submit', (e) => { e.preventDefault(); closeSuggest(); state.page = 0; load(); });
  $('#b-reset').addEventListener('click', () => {
    $('#browse-form').reset();
    state.like = null;
    showLike();
    state.page = 0;
    load();
  });
  $('#b-prev').addEventListener('click', () => { if (state.page > 0) { state.page -= 1; load(); } });
  $('#b-next').addEventListener('click', () => { state.page += 1; load(); });
  for (const id of ['#b-size', '#b-sort', '#b-order', '#b-rating']) $(id).addEventListener('change', () => { state.page = 0; load(); });

  // Rating choices and score names come from the collection itself.
  async function fillChoices() {
    try {
      const r = await api('/v1/tags?prefix=rating:&limit=20');
      const sel = $('#b-rating');
      for (const t of r.data) {
        const v = t.name.slice(7);
        if (![...sel.options].some((o) => o.value === v)) sel.append(el('option', { value: v, textContent: `${v} (${t.count})` }));
      }
      // WD-style taggers name their rating tags without the prefix (the server treats both as ratings).
      for (const bare of ['general', 'sensitive', 'questionable', 'explicit']) {
        const b = await api(`/v1/tags?prefix=${bare}&limit=50`);
        const t = b.data.find((x) => x.name === bare);
        if (t && ![...sel.options].some((o) => o.value === bare)) sel.append(el('option', { value: bare, textContent: `${bare} (${t.count})` }));
      }
      const items = await api('/v1/items?limit=1');
      const it = items.data[0];
      const sel2 = $('#b-score');
      for (const [scorer, values] of Object.entries((it && it.scores) || {})) {
        for (const name of Object.keys(values)) {
          const v = `${scorer}:${name}`;
          if (![...sel2.options].some((o) => o.value === v)) sel2.append(el('option', { value: v, textContent: v }));
        }
      }
    } catch (e) { /* the grid's own request reports errors */ }
  }

  // ---- the item page ----
  const dialog = $('#item');
  let current = null;

  function fact(dt, dd) { return [el('dt', { textContent: dt }), el('dd', { textContent: dd })]; }

  async function openItem(id) {
    let r;
    try { r = await api(itemPath(id)); } catch (e) { $('#browse-status').textContent = e.message; return; }
    const it = r.data;
    current = it;
    const name = itemName(it);
    $('#item-h').textContent = name;
    $('#item-img').src = it.thumbnail;
    $('#item-img').alt = name;
    const when = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : '–');
    $('#item-facts').replaceChildren(...fact('Id', String(it.id)), ...fact('Source', it.source || '–'),
      ...fact('Size', `${it.width}×${it.height}`), ...fact('Added', when(it.createdAt)));
    const tagBox = $('#item-tags');
    tagBox.replaceChildren();
    for (const [tagger, list] of Object.entries(it.tags || {})) {
      const group = el('details', { className: 'score-head', open: true, dataset: { tagger } },
        el('summary', { textContent: `${tagger} (${list.length})` }));
      for (const t of list) {
        const b = bar(t.name, t.score);
        b.dataset.tag = t.name;
        group.append(b);
      }
      tagBox.append(group);
    }
    if (!tagBox.children.length) tagBox.append(note('No tags.'));
    const scoreBox = $('#item-scores');
    scoreBox.replaceChildren();
    const table = el('table', {}, el('thead', {}, el('tr', {}, el('th', { textContent: 'Scorer' }), el('th', { textContent: 'Output' }), el('th', { textContent: 'Value' }))));
    const body = el('tbody');
    for (const [scorer, values] of Object.entries(it.scores || {})) {
      for (const [k, v] of Object.entries(values)) {
        body.append(el('tr', { dataset: { score: `${scorer}:${k}` } }, el('td', { textContent: scorer }), el('td', { textContent: k }),
          el('td', { textContent: Number.isInteger(v) ? String(v) : v.toFixed(4) })));
      }
    }
    table.append(body);
    scoreBox.append(body.children.length ? table : note('No scores.'));
    $('#item-msg').textContent = '';
    const del = $('#item-delete');
    del.textContent = 'Delete';
    delete del.dataset.armed;
    if (!dialog.open) dialog.showModal();
    $('#item-close').focus();
    similar(it);
    duplicatesOf(it);
  }

  async function similar(it) {
    const box = $('#item-similar');
    box.replaceChildren(note('Searching…'));
    try {
      const r = await api(`/v1/items?like=${enc(String(it.id))}&limit=8`);
      box.replaceChildren(...r.data.map(gridTile));
      if (!r.data.length) box.replaceChildren(note('Nothing similar.'));
    } catch (e) { box.replaceChildren(note(e.message, 'error')); }
  }

  // GET /v1/duplicates may be missing on this server (404): the item page says so and goes on.
  let dupCache = null;
  async function duplicateGroups(fresh) {
    if (!dupCache || fresh) dupCache = api('/v1/duplicates').then((r) => groupsOf(r), (e) => { dupCache = null; throw e; });
    return dupCache;
  }
  const groupsOf = (r) => {
    const d = r && (r.groups ? r : r.data);
    return (d && Array.isArray(d.groups)) ? d.groups : [];
  };
  const groupId = (g, i) => (g.id !== undefined && g.id !== null ? String(g.id) : String(i));
  const unavailable = (e) => (e.status === 404 || e.status === 405
    ? 'Duplicate detection is not available on this server.' : e.message);

  async function duplicatesOf(it) {
    const box = $('#item-dups');
    box.replaceChildren(note('Looking for duplicates…'));
    try {
      const groups = await duplicateGroups(false);
      const g = groups.find((x) => (x.members || []).some((m) => String(m.id) === String(it.id)));
      if (!g) { box.replaceChildren(note('No duplicates or variants of this item.')); return; }
      const ul = el('ul', { className: 'relations' });
      for (const m of g.members) {
        if (String(m.id) === String(it.id)) continue;
        ul.append(el('li', { dataset: { id: String(m.id), relation: m.relation } },
          el('button', { type: 'button', className: 'link-button', textContent: itemName(m), onclick: () => openItem(m.id) }),
          ` — ${relationText(m.relation)}${typeof m.score === 'number' ? ` (${m.score.toFixed(3)})` : ''}`,
          String(g.keep) === String(m.id) && m.relation !== 'keep' ? el('strong', { textContent: ' · suggested keeper' }) : ''));
      }
      box.replaceChildren(ul);
    } catch (e) { box.replaceChildren(note(unavailable(e))); }
  }

  const RELATIONS = { keep: 'suggested keeper', exact: 'exact copy', near_duplicate: 'near-duplicate', variant: 'variant' };
  const relationText = (r) => RELATIONS[r] || r || 'related';

  $('#item-close').addEventListener('click', () => dialog.close());
  $('#item-like').addEventListener('click', () => {
    if (!current) return;
    state.like = { id: current.id, name: itemName(current) };
    $('#b-sort').value = 'similarity';
    dialog.close();
    showLike();
    state.page = 0;
    load();
    $('#browse').scrollIntoView();
  });
  $('#item-delete').addEventListener('click', async () => {
    const del = $('#item-delete');
    if (!current) return;
    // Two steps, so one stray click or key press cannot delete.
    if (!del.dataset.armed) { del.dataset.armed = '1'; del.textContent = 'Confirm delete'; return; }
    try {
      await api(itemPath(current.id), { method: 'DELETE' });
      dialog.close();
      $('#browse-status').textContent = `Deleted ${itemName(current)}.`;
      current = null;
      load();
      if (typeof refreshCollection === 'function') refreshCollection();
    } catch (e) { $('#item-msg').textContent = e.message; $('#item-msg').className = 'hint error'; }
  });

  // ---- the Duplicates view ----
  async function loadDups() {
    const box = $('#dups-groups');
    const status = $('#dups-status');
    status.textContent = 'Grouping…';
    box.replaceChildren();
    let groups;
    try { groups = await duplicateGroups(true); } catch (e) { status.textContent = unavailable(e); return; }
    status.textContent = groups.length ? `${groups.length} group${groups.length === 1 ? '' : 's'}.` : 'No duplicates found.';
    groups.forEach((g, i) => box.append(groupView(g, groupId(g, i))));
  }

  function groupView(g, gid) {
    const field = `keep-${gid.replace(/[^\w-]/g, '_')}`;
    const row = el('div', { className: 'dup-row' });
    for (const m of g.members || []) {
      const keeper = String(m.id) === String(g.keep);
      const radio = el('input', { type: 'radio', name: field, value: String(m.id), checked: keeper });
      radio.setAttribute('aria-label', `Keep ${itemName(m)}`);
      const img = el('img', { src: `${itemPath(m.id)}/thumbnail`, alt: '', width: 160, height: 160 });
      img.addEventListener('error', () => img.classList.add('missing'), { once: true });
      row.append(el('figure', { className: keeper ? 'dup keeper' : 'dup', dataset: { id: String(m.id), relation: m.relation || '' } }, img,
        el('figcaption', {}, el('span', { className: 'name', textContent: itemName(m), title: m.source || String(m.id) }),
          el('span', { className: 'rel', textContent: relationText(m.relation) + (typeof m.score === 'number' ? ` · ${m.score.toFixed(3)}` : '') }),
          el('label', {}, radio, ' keep this'))));
    }
    const msg = el('p', { className: 'hint', role: 'status' });
    const resolve = el('button', { type: 'button', className: 'resolve', textContent: 'Resolve: keep the chosen copy' });
    resolve.setAttribute('aria-label', `Resolve group ${gid}`);
    const card = el('article', { className: 'dup-group', dataset: { group: gid } },
      el('h3', { textContent: `Group ${gid} · ${(g.members || []).length} items` }), row, el('div', { className: 'row' }, resolve), msg);
    resolve.addEventListener('click', async () => {
      const chosen = row.querySelector('input:checked');
      resolve.disabled = true;
      try {
        await api(`/v1/duplicates/${enc(gid)}/resolve`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ keep: chosen ? chosen.value : g.keep }) });
        card.replaceChildren(note(`Group ${gid} resolved: kept ${chosen ? chosen.value : g.keep}.`));
        card.classList.add('resolved');
        dupCache = null;
        load();
      } catch (e) { resolve.disabled = false; msg.textContent = e.message; msg.className = 'hint error'; }
    });
    return card;
  }
  $('#dups-load').addEventListener('click', loadDups);

  fillChoices();
  load();
})();
