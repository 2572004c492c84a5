'use strict';
// The Caption panel: POST /v1/caption per image with the options of `acg2vec tag --captions`, an
// editable caption per image, and all captions as one zip (STORE method, written here).
(() => {
  const form = $('#cap-form');
  if (!form) return;
  const entries = []; // {file, name, card, text, edited, tags}
  let generation = 0;

  // ---- zip (PKWARE APPNOTE 6.3: local headers, central directory, end record; no compression) ----
  const CRC_TABLE = (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      t[n] = c >>> 0;
    }
    return t;
  })();
  function crc32(bytes) {
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }
  function zip(files) { // [{name, data: Uint8Array}] → Blob
    const utf8 = new TextEncoder();
    const now = new Date();
    const time = (now.getHours() << 11) | (now.getMinutes() << 5) | (now.getSeconds() >> 1);
    const date = ((now.getFullYear() - 1980) << 9) | ((now.getMonth() + 1) << 5) | now.getDate();
    const parts = [];
    const central = [];
    let offset = 0;
    for (const f of files) {
      const name = utf8.encode(f.name);
      const crc = crc32(f.data);
      const head = (sig, extra) => {
        const b = new DataView(new ArrayBuffer(extra ? 46 : 30));
        let p = 0;
        const u32 = (v) => { b.setUint32(p, v, true); p += 4; };
        const u16 = (v) => { b.setUint16(p, v, true); p += 2; };
        u32(sig);
        if (extra) u16(20); // version made by
        u16(20); u16(0x0800); u16(0); u16(time); u16(date); // needed, flags (UTF-8 names), STORE, time, date
        u32(crc); u32(f.data.length); u32(f.data.length); u16(name.length); u16(0);
        if (extra) { u16(0); u16(0); u16(0); u32(0); u32(offset); } // comment, disk, attributes, local header offset
        return new Uint8Array(b.buffer);
      };
      const local = head(0x04034b50, false);
      parts.push(local, name, f.data);
      central.push(head(0x02014b50, true), name);
      offset += local.length + name.length + f.data.length;
    }
    const size = central.reduce((n, a) => n + a.length, 0);
    const end = new DataView(new ArrayBuffer(22));
    end.setUint32(0, 0x06054b50, true);
    end.setUint16(8, files.length, true);
    end.setUint16(10, files.length, true);
    end.setUint32(12, size, true);
    end.setUint32(16, offset, true);
    return new Blob([...parts, ...central, new Uint8Array(end.buffer)], { type: 'application/zip' });
  }

  // ---- options ----
  async function fillModels() {
    const box = $('#cap-models');
    try {
      const r = await api('/tagger/v1/interrogators');
      const names = (r && r.models) || [];
      box.replaceChildren(...names.map((n, i) => el('label', {},
        el('input', { type: 'checkbox', name: 'model', value: n, checked: i === 0 }), ` ${n}`)));
      if (!names.length) box.replaceChildren(note('No tagger pack is installed.'));
    } catch (e) { box.replaceChildren(note('The tagger list is not available.')); }
  }

  function fields() {
    const f = [];
    const models = [...form.querySelectorAll('input[name=model]:checked')].map((i) => i.value);
    if (models.length) f.push(['model', models.join(',')]);
    for (const input of form.querySelectorAll('[name]')) {
      if (input.name === 'model') continue;
      if (input.type === 'checkbox') { if (input.checked) f.push([input.name, 'true']); }
      else if (input.value !== '' && !(input.name === 'ensemble' && models.length < 2)) f.push([input.name, input.value]);
    }
    return f;
  }

  // ---- captioning ----
  const stem = (name) => name.replace(/\.[^./\\]*$/, '');
  function card(entry) {
    const img = el('img', { alt: '', width: 96, height: 96 });
    img.src = URL.createObjectURL(entry.file);
    const id = `cap-t${entries.length}`;
    const text = el('textarea', { id, rows: 3, spellcheck: false });
    text.addEventListener('input', () => { entry.edited = true; entry.card.classList.add('edited'); });
    const reset = el('button', { type: 'button', className: 'small ghost', textContent: 'Undo edits',
      onclick: () => { entry.edited = false; entry.card.classList.remove('edited'); text.value = entry.text; } });
    entry.card = el('article', { className: 'cap-item', dataset: { name: entry.name } }, img,
      el('div', { className: 'cap-body' }, el('label', { htmlFor: id, className: 'name', textContent: entry.name }), text,
        el('div', { className: 'row' }, el('span', { className: 'hint state' }), reset), el('ul', { className: 'chips tags' })));
    return entry.card;
  }

  async function captionOne(entry, gen) {
    const f = new FormData();
    f.append('image', entry.file, entry.file.name);
    for (const [k, v] of fields()) f.append(k, v);
    const state = $('.state', entry.card);
    try {
      const r = (await api('/v1/caption', { method: 'POST', body: f })).data;
      if (gen !== generation) return;
      entry.text = r.caption;
      entry.error = null;
      if (!entry.edited) $('textarea', entry.card).value = r.caption;
      $('.tags', entry.card).replaceChildren(...r.tags.map((t) => el('li', { dataset: { tag: t.name, category: t.category } },
        `${t.text} `, el('span', { className: 'score', textContent: t.score.toFixed(2) }))));
      state.textContent = `${r.tags.length} tags · ${r.models.join(' + ')}`;
      state.className = 'hint state';
    } catch (e) {
      if (gen !== generation) return;
      entry.error = e.message;
      state.textContent = e.message;
      state.className = 'hint state error';
    }
  }

  // Every image again with the current options, four requests at a time; edited captions stay.
  async function captionAll() {
    const gen = ++generation;
    const todo = [...entries];
    const status = $('#cap-status');
    status.textContent = `Captioning ${todo.length} image${todo.length === 1 ? '' : 's'}…`;
    $('#cap-zip').disabled = true;
    const worker = async () => { while (todo.length) await captionOne(todo.shift(), gen); };
    await Promise.all([worker(), worker(), worker(), worker()]);
    if (gen !== generation) return;
    const failed = entries.filter((e) => e.error).length;
    status.textContent = `${entries.length - failed} captioned${failed ? `, ${failed} failed` : ''}.`;
    $('#cap-zip').disabled = !entries.some((e) => !e.error);
    $('#cap-list').dataset.generation = String(gen);
  }

  function addFiles(files) {
    const images = [...files].filter((f) => !f.type || f.type.startsWith('image/'));
    for (const file of images) {
      const entry = { file, name: file.webkitRelativePath || file.name, text: '', edited: false };
      $('#cap-list').append(card(entry));
      entries.push(entry);
    }
    if (images.length) captionAll();
  }

  function download() {
    const ext = $('#cap-ext').value.trim() || '.txt';
    const used = new Set();
    const files = [];
    const utf8 = new TextEncoder();
    for (const e of entries) {
      if (e.error) continue;
      let name = stem(e.name) + ext;
      for (let n = 2; used.has(name); n++) name = `${stem(e.name)}-${n}${ext}`;
      used.add(name);
      files.push({ name, data: utf8.encode(`${$('textarea', e.card).value.trim()}\n`) });
    }
    const a = el('a', { href: URL.createObjectURL(zip(files)), download: 'captions.zip' });
    document.body.append(a);
    a.click();
    a.remove();
    $('#cap-status').textContent = `captions.zip: ${files.length} file${files.length === 1 ? '' : 's'}.`;
  }

  const drop = $('#cap-drop');
  const input = $('#cap-file');
  drop.addEventListener('click', (e) => { if (e.target.tagName !== 'LABEL' && e.target !== input) input.click(); });
  drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click(); } });
  input.addEventListener('change', () => { addFiles(input.files); input.value = ''; });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); addFiles(e.dataTransfer.files); });
  let timer = 0;
  form.addEventListener('change', () => { clearTimeout(timer); timer = setTimeout(() => { if (entries.length) captionAll(); }, 250); });
  form.addEventListener('submit', (e) => e.preventDefault());
  $('#cap-zip').addEventListener('click', download);
  $('#cap-clear').addEventListener('click', () => {
    generation++;
    for (const e of entries) URL.revokeObjectURL($('img', e.card).src);
    entries.length = 0;
    $('#cap-list').replaceChildren();
    $('#cap-status').textContent = '';
    $('#cap-zip').disabled = true;
  });
  fillModels();
})();
