'use strict';
// The Upscale panel: POST /v1/upscale, then a before/after comparison and a download link.
(() => {
  const q = (id) => document.getElementById(id);
  const form = q('upscale-form');
  if (!form) return;
  let resultUrl = null;
  let sourceUrl = null;

  function headers() {
    const key = sessionStorage.getItem('acg2vec-api-key') || '';
    return key ? { 'X-API-Key': key } : {};
  }

  // Upscaler packs from /health (name -> {task, state}).
  fetch('/health', { headers: headers() }).then((r) => r.json()).then((h) => {
    const select = q('upscale-model');
    for (const [name, m] of Object.entries((h && h.models) || {})) {
      if (m.task !== 'upscaler') continue;
      const o = document.createElement('option');
      o.value = name;
      o.textContent = m.state === 'ready' ? name : `${name} (${m.state})`;
      select.append(o);
    }
  }).catch(() => {});

  function setSplit(percent) {
    q('upscale-before-clip').style.width = `${percent}%`;
    q('upscale-line').style.left = `${percent}%`;
  }
  q('upscale-slider').addEventListener('input', (e) => setSplit(Number(e.target.value)));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const file = q('upscale-file').files[0];
    const status = q('upscale-status');
    if (!file) { status.textContent = 'Choose an image first.'; return; }
    const body = new FormData();
    body.append('image', file);
    if (q('upscale-model').value) body.append('model', q('upscale-model').value);
    body.append('format', q('upscale-format').value);
    q('upscale-go').disabled = true;
    status.textContent = 'Upscaling…';
    try {
      const res = await fetch('/v1/upscale', { method: 'POST', body, headers: headers() });
      if (!res.ok) {
        let msg = `The server answered HTTP ${res.status}.`;
        try { const j = await res.json(); if (j && j.message) msg = j.message; } catch (err) { /* not JSON */ }
        throw new Error(msg);
      }
      const blob = await res.blob();
      if (resultUrl) URL.revokeObjectURL(resultUrl);
      if (sourceUrl) URL.revokeObjectURL(sourceUrl);
      resultUrl = URL.createObjectURL(blob);
      sourceUrl = URL.createObjectURL(file);
      const after = q('upscale-after');
      await new Promise((resolve, reject) => { after.onload = resolve; after.onerror = reject; after.src = resultUrl; });
      q('upscale-before').src = sourceUrl;
      const ext = q('upscale-format').value;
      const link = q('upscale-download');
      link.href = resultUrl;
      link.download = `${file.name.replace(/\.[^.]*$/, '')}_2x.${ext}`;
      q('upscale-result').hidden = false;
      setSplit(Number(q('upscale-slider').value));
      status.textContent = `${res.headers.get('X-Acg2vec-Model') || 'upscaled'}: ${after.naturalWidth}×${after.naturalHeight}` +
        ` in ${Number(res.headers.get('X-Acg2vec-Seconds') || 0).toFixed(1)} s`;
    } catch (err) {
      status.textContent = err.message || String(err);
    } finally {
      q('upscale-go').disabled = false;
    }
  });
})();
