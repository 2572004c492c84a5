#!/usr/bin/env node
// Browser test of the page served at /: the real binary on 127.0.0.1 with a small ingested collection,
// the real nsfwjs classifier and tiny random-weight tagger and pix2score packs (tools/make_tiny_packs.py), driven through
// Debian's headless Chromium with puppeteer-core. Each check asserts on what the page renders and
// compares it with the API's own answer for the same file. Screenshots of the main states go to
// $ACG2VEC_BUILD_DIR/web-screenshots/.
'use strict';

const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const { spawn, spawnSync } = require('child_process');

const SOURCE = process.env.ACG2VEC_SOURCE_DIR || path.resolve(__dirname, '..', '..');
const BUILD = process.env.ACG2VEC_BUILD_DIR || path.join(SOURCE, 'build', 'release');
const BIN = process.env.ACG2VEC_BIN || path.join(BUILD, 'acg2vec');
const CHROMIUM = process.env.ACG2VEC_CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.join(BUILD, 'web-screenshots');
const PY = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const TOTAL_BUDGET_MS = 150000; // the whole run, start-up included
const STEP_TIMEOUT_MS = 30000;

// The collection: real images with licences in tests/data/images/real/SOURCE.md.
const REAL = path.join(SOURCE, 'tests', 'data', 'images', 'real');
const INGESTED = ['demo_lucy_happy.png', 'demo_eileen_happy.png', 'thequestion_sylvie_blue_normal.png',
  'demo_bg_washington.jpg', 'thequestion_bg_uni.jpg'];
const QUERY = 'demo_lucy_happy.png'; // ingested: the signature search must find it first
const FRESH = 'chibi_character_rick_.png'; // not ingested: used for "Add to collection"

const results = [];
const cleanups = [];
let page;
let allowNetworkErrors = false;
const consoleErrors = [];
const foreignRequests = [];

function log(msg) { process.stdout.write(`${msg}\n`); }

async function step(name, fn) {
  const t0 = Date.now();
  let timer;
  try {
    await Promise.race([fn(), new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`step timed out after ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
    })]);
    results.push({ name, ok: true });
    log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push({ name, ok: false, error: e });
    log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    if (page) await shot(`failed-${name.replace(/[^a-z0-9]+/gi, '-')}`).catch(() => {});
  } finally {
    clearTimeout(timer);
  }
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120000, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

function request(port, method, urlPath, { body, headers } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers, timeout: 60000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
        resolve({ status: res.statusCode, json, text });
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    if (body) req.write(body);
    req.end();
  });
}

function multipart(fields, files) {
  const boundary = `----acg2vec${Date.now().toString(16)}`;
  const parts = [];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  }
  for (const [k, [name, data, type]] of Object.entries(files)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"; filename="${name}"\r\nContent-Type: ${type}\r\n\r\n`));
    parts.push(data, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` } };
}

/** The model packs: the real nsfwjs MobileNetV2 classifier and the tiny tagger and pix2score packs
 * (random weights), cached in the build tree. */
function preparePacks(tmp) {
  // Shared with the Python tests: cached on the content of the generators, made under a file lock.
  const cache = path.join(SOURCE, 'tests', 'integration', 'fixture_cache.py');
  const env = { ...process.env, ACG2VEC_BUILD_DIR: BUILD, ACG2VEC_SOURCE_DIR: SOURCE };
  const all = run(PY, [cache, 'packs'], { cwd: SOURCE, env, timeout: 600000 }).trim();
  const tiny = run(PY, [cache, 'tiny-packs'], { cwd: SOURCE, env, timeout: 600000 }).trim();
  const models = path.join(tmp, 'models');
  fs.mkdirSync(models);
  fs.symlinkSync(path.join(all, 'nsfw-mobilenet-v2'), path.join(models, 'nsfw-mobilenet-v2'));
  for (const p of ['tiny-tagger', 'tiny-pix2score']) fs.symlinkSync(path.join(tiny, p), path.join(models, p));
  // The committed Real-CUGAN pack (real weights) for the Upscale panel.
  fs.symlinkSync(path.join(SOURCE, 'models', 'realcugan-pro-conservative'), path.join(models, 'realcugan-pro-conservative'));
  return models;
}

const API_KEY = 'browser-test-key-7f3a9c';

async function startServer(tmp, models) {
  const data = path.join(tmp, 'data');
  const images = path.join(tmp, 'images');
  fs.mkdirSync(images);
  for (const f of INGESTED) fs.copyFileSync(path.join(REAL, f), path.join(images, f));
  run(BIN, ['--data-dir', data, '--models-dir', models, 'ingest', images]);
  const portFile = path.join(tmp, 'port');
  const logFile = fs.openSync(path.join(tmp, 'server.log'), 'a');
  // Writes need a key (reads stay open): the page must ask for it and send it.
  const keyFile = path.join(tmp, 'keys');
  fs.writeFileSync(keyFile, `# test key\n${API_KEY}\n`);
  const proc = spawn(BIN, ['--data-dir', data, '--models-dir', models, 'serve', '--host', '127.0.0.1',
    '--port', '0', '--port-file', portFile, '--threads', '4', '--web-root', path.join(SOURCE, 'web'),
    '--api-key-file', keyFile], { stdio: ['ignore', logFile, logFile] });
  cleanups.push(() => new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode) { resolve(); return; }
    const kill = setTimeout(() => proc.kill('SIGKILL'), 10000);
    proc.once('exit', () => { clearTimeout(kill); resolve(); });
    proc.kill('SIGTERM');
  }));
  const serverLog = () => fs.readFileSync(path.join(tmp, 'server.log'), 'utf8').slice(-3000);
  const deadline = Date.now() + 60000;
  let port = 0;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}: ${serverLog()}`);
    if (!port && fs.existsSync(portFile)) port = Number(fs.readFileSync(portFile, 'utf8')) || 0;
    if (port) {
      const r = await request(port, 'GET', '/health').catch(() => ({ status: 0 }));
      if (r.status === 200) return { port, images, serverLog };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server did not become ready: ${serverLog()}`);
}

async function shot(name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

const visibleTags = (category) => page.$$eval(`#results > .result:first-child .cat[data-category="${category}"] .bar .label`,
  (els) => els.map((e) => e.textContent));

async function setSlider(category, value) {
  await page.$eval(`#results > .result:first-child .cat[data-category="${category}"] input[type=range]`, (s, v) => {
    s.value = String(v);
    s.dispatchEvent(new Event('input', { bubbles: true }));
  }, value);
}

async function uploadThroughInput(file) {
  const before = await page.$$eval('.result', (r) => r.length);
  const input = await page.$('#file');
  await input.uploadFile(file);
  await page.waitForFunction((n) => document.querySelectorAll('.result').length > n
    && document.querySelector('.result').matches('.done'), { timeout: 20000 }, before);
}

async function main() {
  for (const [what, p] of [['the binary', BIN], ['Chromium', CHROMIUM]]) {
    if (!fs.existsSync(p)) throw new Error(`${what} is missing at ${p} (run scripts/setup.sh and build)`);
  }
  let puppeteer;
  try {
    puppeteer = require(path.join(SOURCE, 'tools', 'node_modules', 'puppeteer-core'));
  } catch (e) {
    throw new Error('puppeteer-core is missing: cd tools && PUPPETEER_SKIP_DOWNLOAD=1 npm install');
  }
  // No stale screenshot from an earlier run; other suites' files (browse-*.png) are theirs to replace.
  for (const f of fs.existsSync(SHOTS) ? fs.readdirSync(SHOTS) : []) {
    if (!f.startsWith('browse-')) fs.rmSync(path.join(SHOTS, f), { recursive: true, force: true });
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'acg2vec-web-'));
  cleanups.push(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const models = preparePacks(tmp);
  const { port, images, serverLog } = await startServer(tmp, models);
  const base = `http://127.0.0.1:${port}`;
  log(`server on ${base}`);

  // What the API says about the query image: the reference for the rendered tags and grid.
  const queryBytes = fs.readFileSync(path.join(images, QUERY));
  const mp = multipart({ all: 'true' }, { image: [QUERY, queryBytes, 'image/png'] });
  const tagAnswer = await request(port, 'POST', '/v1/tag', mp);
  assert.strictEqual(tagAnswer.status, 200, `POST /v1/tag: ${tagAnswer.text}`);
  const apiTags = tagAnswer.json.data.tags;
  const expectedAbove = (cat, t) => apiTags[cat].filter((x) => x.score >= t).map((x) => x.name);
  const scoreAnswer = await request(port, 'POST', '/pix2score', multipart({}, { image: [QUERY, queryBytes, 'image/png'] }));
  assert.strictEqual(scoreAnswer.status, 200, `POST /pix2score: ${scoreAnswer.text}`);
  const items = (await request(port, 'GET', '/v1/items?limit=100')).json.data;
  const idOf = Object.fromEntries(items.map((it) => [path.basename(it.source), String(it.id)]));
  assert.ok(idOf[QUERY], `ingested items lack ${QUERY}: ${JSON.stringify(items.map((i) => i.source))}`);

  const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'acg2vec-chromium-'));
  cleanups.push(() => fs.rmSync(userData, { recursive: true, force: true }));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage', `--user-data-dir=${userData}`],
  });
  cleanups.push(() => browser.close().catch(() => {}));
  page = await browser.newPage();
  page.setDefaultTimeout(20000);
  await page.setViewport({ width: 1200, height: 900 });
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    // Chromium logs every 4xx/5xx fetch; only the steps that provoke one may produce it.
    if (allowNetworkErrors && /^Failed to load resource: the server responded with a status of (400|401|415|503)\b/.test(text)) return;
    consoleErrors.push(text);
  });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(`${base}/`) && !u.startsWith('blob:') && !u.startsWith('data:')) foreignRequests.push(u);
  });

  await step('page weighs under 100 kB without images', async () => {
    const dir = path.join(SOURCE, 'web');
    const files = fs.readdirSync(dir).filter((f) => !/\.(png|jpe?g|gif|webp|svg|ico)$/i.test(f));
    const total = files.reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
    log(`     web/ is ${total} bytes: ${files.join(', ')}`);
    assert.ok(total < 100 * 1024, `web/ weighs ${total} bytes`);
  });

  const loaded = [];
  await step('page loads from 127.0.0.1 only and shows the collection', async () => {
    const onResponse = (r) => loaded.push(r);
    page.on('response', onResponse);
    await page.goto(`${base}/`, { waitUntil: 'networkidle0' });
    page.off('response', onResponse);
    assert.deepStrictEqual(foreignRequests, [], 'requests left 127.0.0.1');
    let bytes = 0;
    for (const r of loaded) {
      if (r.request().resourceType() === 'image') continue;
      bytes += (await r.buffer().catch(() => Buffer.alloc(0))).length;
    }
    assert.ok(bytes < 100 * 1024, `the page and its API answers at load weigh ${bytes} bytes`);
    await page.waitForFunction(() => /^\d+$/.test(document.querySelector('#count-items').textContent));
    assert.strictEqual(await page.$eval('#count-items', (e) => e.textContent), String(INGESTED.length));
    assert.match(await page.$eval('#count-spaces', (e) => e.textContent), new RegExp(`signature \\(${INGESTED.length}\\)`));
    const recent = await page.$$eval('#recent .tile .name', (els) => els.map((e) => e.textContent));
    assert.deepStrictEqual([...recent].sort(), [...INGESTED].sort(), 'recent items');
    await page.waitForFunction(() => [...document.querySelectorAll('#recent img')].every((i) => i.complete && i.naturalWidth > 0));
    const rows = await page.$$eval('#models tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
    const byName = Object.fromEntries(rows.map((r) => [r[0], r]));
    assert.deepStrictEqual(byName['tiny-tagger'], ['tiny-tagger', 'tagger', 'ready']);
    assert.deepStrictEqual(byName['nsfw-mobilenet-v2'], ['nsfw-mobilenet-v2', 'classifier', 'ready']);
    assert.deepStrictEqual(byName['tiny-pix2score'], ['tiny-pix2score', 'scores', 'ready']);
    const missing = await page.$eval('#missing', (e) => e.textContent);
    assert.match(missing, /CLIP pack/, 'the collection view names the packs to add');
    assert.doesNotMatch(missing, /pix2score/, 'an installed pack is listed as missing');
    assert.match(await page.$eval('#text-help', (e) => e.textContent), /CLIP pack/);
    await shot('01-collection');
  });

  await step('keyboard: the drop zone is reachable with Tab and Enter opens the file chooser', async () => {
    await page.evaluate(() => { document.activeElement.blur(); window.scrollTo(0, 0); });
    let focused = '';
    for (let i = 0; i < 12 && focused !== 'drop'; ++i) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate(() => document.activeElement.id);
    }
    assert.strictEqual(focused, 'drop', 'Tab never reached the drop zone');
    // Chromium turns the chooser interception on asynchronously: a rendered frame in between makes sure
    // it is on before the key press (otherwise the very first chooser opens uncaught now and then).
    const waiting = page.waitForFileChooser({ timeout: 5000 });
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(resolve)));
    await page.keyboard.press('Enter');
    const chooser = await waiting;
    assert.ok(chooser.isMultiple(), 'the chooser accepts several files');
    await chooser.cancel();
  });

  await step('upload → tags with score bars; the slider changes the visible tags', async () => {
    await uploadThroughInput(path.join(images, QUERY));
    assert.strictEqual(await page.$('.result.failed'), null, 'the upload failed');
    assert.strictEqual(await page.$eval('#results > .result:first-child .file-name', (e) => e.textContent), QUERY);
    // Starts at the pack's own thresholds (general 0.5, character 0.6) and shows what the API returns above them.
    for (const [cat, t] of [['general', 0.5], ['character', 0.6]]) {
      const slider = await page.$eval(`#results > .result:first-child .cat[data-category="${cat}"] input`, (s) => Number(s.value));
      assert.strictEqual(slider, t, `${cat} slider start`);
      assert.deepStrictEqual(await visibleTags(cat), expectedAbove(cat, t), `${cat} tags at ${t}`);
    }
    const bars = await page.$$eval('#results > .result:first-child .cat[data-category="general"] .bar', (els) => els.map((b) => ({
      fill: parseFloat(b.querySelector('.fill').style.width), value: Number(b.querySelector('.value').textContent),
    })));
    for (const b of bars) assert.ok(Math.abs(b.fill - b.value * 100) < 0.6, `bar width ${b.fill}% for ${b.value}`);
    assert.match(await page.$eval('#results > .result:first-child .rating', (e) => e.textContent), /^Rating: (safe|questionable|explicit) \(\d\.\d\d\)$/);
    // Lowering and raising the general threshold, without a new request.
    const before = await visibleTags('general');
    let tagRequests = 0;
    const count = (r) => { if (r.url().endsWith('/v1/tag')) ++tagRequests; };
    page.on('request', count);
    await setSlider('general', 0.2);
    const low = await visibleTags('general');
    assert.deepStrictEqual(low, expectedAbove('general', 0.2));
    assert.ok(low.length > before.length, `0.2 shows ${low.length} tags, 0.5 showed ${before.length}`);
    await shot('02-upload-tags-low-threshold');
    await setSlider('general', 0.8);
    const high = await visibleTags('general');
    assert.deepStrictEqual(high, expectedAbove('general', 0.8));
    assert.ok(high.length < before.length, `0.8 shows ${high.length} tags, 0.5 showed ${before.length}`);
    // The keyboard moves the slider too: End = 1.0 hides every tag.
    await page.focus('#results > .result:first-child .cat[data-category="general"] input');
    await page.keyboard.press('End');
    assert.deepStrictEqual(await visibleTags('general'), expectedAbove('general', 1));
    assert.match(await page.$eval('#results > .result:first-child .cat[data-category="general"] .tag-list', (e) => e.textContent), /No tag above/);
    await setSlider('general', 0.5);
    page.off('request', count);
    assert.strictEqual(tagRequests, 0, 'moving a slider sent a request');
    // The classifier's rating bars: the real nsfwjs classes.
    const classes = await page.$$eval('#results > .result:first-child .panel.classify .bar .label', (els) => els.map((e) => e.textContent));
    assert.deepStrictEqual([...classes].sort(), ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy']);
    // pix2score: one group per head, with the API's probabilities (those >= 0.02 and the best one).
    const heads = await page.$$eval('#results > .result:first-child .panel.scores .score-head', (els) => els.map((g) => ({
      head: g.dataset.head, title: g.querySelector('summary').textContent, open: g.open,
      values: [...g.querySelectorAll('.bar .value')].map((v) => Number(v.textContent)),
    })));
    assert.deepStrictEqual(heads.map((h) => h.head), ['bookmarkPredict', 'viewPredict', 'sanityPredict']);
    for (const h of heads) {
      const probs = scoreAnswer.json.data[h.head];
      const best = Math.max(...probs);
      const expected = probs.filter((v) => v >= 0.02 || v === best).map((v) => Number(v.toFixed(2)));
      assert.deepStrictEqual(h.values, expected, `${h.head} bars`);
      assert.match(h.title, /^(Bookmarks|Views|Sanity level): \S+$/);
      assert.ok(h.open, `${h.head} is collapsed on a wide screen`);
    }
  });

  let secondId = '';
  await step('upload → similar grid shows the same image first', async () => {
    const tiles = await page.$$eval('#results > .result:first-child .panel.similar .tile', (els) => els.map((t) => ({
      id: t.dataset.id, name: t.querySelector('.name').textContent, score: Number(t.querySelector('.score').textContent),
    })));
    assert.ok(tiles.length >= 2, `${tiles.length} tiles`);
    assert.strictEqual(tiles[0].id, idOf[QUERY], `nearest is ${tiles[0].name}`);
    assert.strictEqual(tiles[0].name, QUERY);
    for (let i = 1; i < tiles.length; ++i) assert.ok(tiles[i].score <= tiles[i - 1].score, 'scores descend');
    assert.ok(tiles[0].score > tiles[1].score, 'the identical image scores above the others');
    assert.match(await page.$eval('#results > .result:first-child .panel.similar .caption', (e) => e.textContent), /perceptual signature/);
    // The grid is the API's answer for the same upload, in the same order.
    const api = await request(port, 'POST', '/v1/search', multipart({ k: '12' }, { image: [QUERY, queryBytes, 'image/png'] }));
    assert.deepStrictEqual(tiles.map((t) => t.id), api.json.data.hits.map((h) => String(h.id)));
    secondId = tiles[1].id;
    await page.waitForFunction(() => [...document.querySelectorAll('#results > .result:first-child .panel.similar img')].every((i) => i.complete && i.naturalWidth > 0));
    await shot('03-upload-tags-similar');
  });

  await step('"More like this" replaces the grid with that item\'s neighbours', async () => {
    assert.ok(secondId, 'no second tile');
    const before = await page.$$eval('#results > .result:first-child .panel.similar .tile', (els) => els.map((t) => t.dataset.id));
    const name = Object.keys(idOf).find((k) => idOf[k] === secondId);
    const button = await page.$(`#results > .result:first-child .panel.similar .tile[data-id="${secondId}"] button`);
    await button.click();
    await page.waitForFunction((n) => document.querySelector('#results > .result:first-child .panel.similar .caption').textContent === `Items like ${n}`
      && document.querySelector('#results > .result:first-child .panel.similar .tile'), {}, name);
    // The grid is the API's answer for the same request (the item itself is not its own neighbour).
    const api = await request(port, 'POST', '/v1/search', {
      body: JSON.stringify({ id: secondId, k: 12 }), headers: { 'Content-Type': 'application/json' },
    });
    const expected = api.json.data.hits.map((h) => String(h.id));
    assert.ok(expected.length >= 1, 'the API found no neighbour');
    const shown = await page.$$eval('#results > .result:first-child .panel.similar .tile', (els) => els.map((t) => t.dataset.id));
    assert.deepStrictEqual(shown, expected);
    assert.notDeepStrictEqual(shown, before, 'the grid did not change');
    assert.ok(shown.includes(idOf[QUERY]), 'the uploaded image is among the neighbours of its neighbour');
    await shot('04-more-like-this');
  });

  await step('"Similar by" a semantic space searches that space', async () => {
    const space = 'nsfw-mobilenet-v2-embedding';
    const options = await page.$$eval('#space option', (els) => els.map((o) => o.value));
    assert.ok(options.includes(space), `spaces offered: ${options}`);
    await page.select('#space', space);
    await uploadThroughInput(path.join(images, QUERY));
    assert.strictEqual(await page.$eval('#results > .result:first-child .panel.similar .caption', (e) => e.textContent), `Nearest by ${space}`);
    const shown = await page.$$eval('#results > .result:first-child .panel.similar .tile', (els) => els.map((t) => t.dataset.id));
    const api = await request(port, 'POST', '/v1/search',
      multipart({ k: '12', space }, { image: [QUERY, queryBytes, 'image/png'] }));
    assert.strictEqual(api.json.data.space, space);
    assert.deepStrictEqual(shown, api.json.data.hits.map((h) => String(h.id)));
    assert.strictEqual(shown[0], idOf[QUERY], 'the same image is nearest in the embedding space too');
    await page.select('#space', '');
  });

  await step('text search explains that a CLIP pack is needed', async () => {
    allowNetworkErrors = true;
    await page.click('#text-q');
    await page.keyboard.type('1girl, blue hair');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => /CLIP pack/.test(document.querySelector('#text-results').textContent));
    const text = await page.$eval('#text-results', (e) => e.textContent);
    assert.match(text, /No text search model is installed\. Install a CLIP pack/);
    assert.strictEqual(await page.$('#text-results .tile'), null);
    await page.$eval('#text', (e) => e.scrollIntoView());
    await shot('05-text-search-no-clip');
    allowNetworkErrors = false;
  });

  await step('an API error is shown as a readable message', async () => {
    allowNetworkErrors = true;
    const bad = path.join(tmp, 'not-an-image.png');
    fs.writeFileSync(bad, 'this is a text file, not a PNG\n');
    const api = await request(port, 'POST', '/v1/classify',
      multipart({}, { image: ['not-an-image.png', fs.readFileSync(bad), 'image/png'] }));
    assert.ok(api.status >= 400 && api.status < 500, `the API answered ${api.status}`);
    await uploadThroughInput(bad);
    const box = await page.$eval('.result', (e) => ({ failed: e.classList.contains('failed'), text: e.textContent }));
    assert.ok(box.failed, 'the card is not marked failed');
    assert.ok(box.text.includes(`Cannot analyse not-an-image.png: ${api.json.message}`), box.text);
    assert.strictEqual(await page.$$eval('#results > .result:first-child .error-box', (e) => e.length), 1, 'one message, not one per panel');
    await page.$eval('.result', (e) => e.scrollIntoView());
    await shot('06-api-error');
    allowNetworkErrors = false;
    // The page keeps working after the error.
    await page.click('.result.failed .close');
    assert.strictEqual(await page.$('.result.failed'), null);
  });

  await step('"Add to collection" without the API key explains it and opens the key box', async () => {
    allowNetworkErrors = true;
    await uploadThroughInput(path.join(REAL, FRESH));
    await page.click('#results > .result:first-child .add');
    await page.waitForFunction(() => /needs an API key/.test(document.querySelector('#results > .result:first-child .actions').textContent));
    assert.ok(await page.$eval('#key-box', (d) => d.open), 'the key box did not open');
    const stats = await request(port, 'GET', '/v1/stats');
    assert.strictEqual(stats.json.data.items, INGESTED.length, 'nothing is stored without the key');
    await shot('07a-api-key-needed');
    allowNetworkErrors = false;
    await page.type('#api-key', API_KEY);
    await page.$eval('#api-key', (e) => e.dispatchEvent(new Event('change')));
  });

  await step('"Add to collection" stores a new image and the collection view updates', async () => {
    await page.click('#results > .result:first-child .add');
    await page.waitForFunction(() => /^Added to the collection$/.test(document.querySelector('#results > .result:first-child .add').textContent));
    await page.waitForFunction((n) => document.querySelector('#count-items').textContent === String(n), {}, INGESTED.length + 1);
    const stats = await request(port, 'GET', '/v1/stats');
    assert.strictEqual(stats.json.data.items, INGESTED.length + 1);
    await page.waitForFunction((f) => [...document.querySelectorAll('#recent .tile .name')].some((e) => e.textContent === f), {}, FRESH);
  });

  await step('several files at once: one card each', async () => {
    const files = ['demo_eileen_happy.png', 'thequestion_sylvie_blue_normal.png'];
    const before = await page.$$eval('.result', (r) => r.length);
    const input = await page.$('#file');
    await input.uploadFile(...files.map((f) => path.join(images, f)));
    await page.waitForFunction((n) => {
      const cards = [...document.querySelectorAll('.result')];
      return cards.length === n && cards.every((c) => c.matches('.done'));
    }, {}, before + files.length);
    const names = await page.$$eval('.result .file-name', (els) => els.slice(0, 2).map((e) => e.textContent));
    assert.deepStrictEqual([...names].sort(), [...files].sort());
    for (const f of files) {
      const first = await page.$$eval('.result', (cards, name) => {
        const card = cards.find((c) => c.querySelector('.file-name').textContent === name);
        return card.querySelector('.panel.similar .tile .name').textContent;
      }, f);
      assert.strictEqual(first, f, `nearest to ${f}`);
    }
  });

  await step('Upscale panel: a 2x result, the before/after slider and a download link', async () => {
    const models = await page.$$eval('#upscale-model option', (o) => o.map((x) => x.value));
    assert.ok(models.includes('realcugan-pro-conservative'), `upscaler choices: ${models}`);
    const input = await page.$('#upscale-file');
    await input.uploadFile(path.join(SOURCE, 'tests', 'data', 'images', 'formats', 'card_rgba.png'));
    await page.click('#upscale-go');
    await page.waitForFunction(() => !document.querySelector('#upscale-result').hidden, { timeout: 30000 });
    assert.deepStrictEqual(await page.$eval('#upscale-after', (i) => [i.naturalWidth, i.naturalHeight]), [128, 96]);
    assert.match(await page.$eval('#upscale-status', (e) => e.textContent), /realcugan-pro-conservative: 128×96/);
    const [href, name] = await page.$eval('#upscale-download', (a) => [a.href, a.download]);
    assert.match(href, /^blob:/);
    assert.strictEqual(name, 'card_rgba_2x.png');
    await page.$eval('#upscale-slider', (s) => { s.value = '20'; s.dispatchEvent(new Event('input', { bubbles: true })); });
    assert.strictEqual(await page.$eval('#upscale-before-clip', (e) => e.style.width), '20%');
    await page.$eval('#upscale', (e) => e.scrollIntoView());
    await shot('09-upscale');
  });

  await step('phone width: no horizontal overflow', async () => {
    await page.setViewport({ width: 375, height: 740, isMobile: true, hasTouch: true, deviceScaleFactor: 1 });
    await page.goto(`${base}/`, { waitUntil: 'networkidle0' });
    await uploadThroughInput(path.join(images, QUERY));
    await page.waitForFunction(() => [...document.querySelectorAll('img')].every((i) => i.complete));
    const over = await page.evaluate(() => {
      const w = document.documentElement.clientWidth;
      const wide = [...document.querySelectorAll('body *')].filter((e) => {
        const r = e.getBoundingClientRect();
        return r.width > 0 && (r.right > w + 0.5 || r.left < -0.5) && !e.closest('.visually-hidden, .skip');
      }).map((e) => `${e.tagName.toLowerCase()}.${e.className}`);
      return { scroll: document.documentElement.scrollWidth, w, wide: wide.slice(0, 5) };
    });
    assert.ok(over.scroll <= over.w, `page is ${over.scroll}px wide at ${over.w}px: ${over.wide.join(', ')}`);
    assert.deepStrictEqual(over.wide, [], 'elements stick out');
    assert.deepStrictEqual(await page.$$eval('#results > .result:first-child .score-head', (els) => els.map((e) => e.open)),
      [false, false, false], 'pix2score heads start collapsed on a phone');
    await shot('07-phone');
    await page.setViewport({ width: 1200, height: 900 });
  });

  await step('models still loading: a banner and the loading state, then ready', async () => {
    allowNetworkErrors = true;
    // The server only loads for a moment at start-up, so the first /health answer is the one a
    // loading server gives (503 with the packs' states); the page's next poll reaches the real server.
    let mocked = 0;
    const onRequest = (r) => {
      if (r.isInterceptResolutionHandled()) return;
      if (r.url() === `${base}/health` && mocked++ === 0) {
        r.respond({ status: 503, contentType: 'application/json',
          body: JSON.stringify({ status: 'loading', models: { 'tiny-tagger': { state: 'loading', task: 'tagger' } } }) });
      } else {
        r.continue();
      }
    };
    await page.setRequestInterception(true);
    page.on('request', onRequest);
    try {
      await page.goto(`${base}/`, { waitUntil: 'domcontentloaded' });
      await page.waitForFunction(() => !document.querySelector('#banner').hidden);
      assert.match(await page.$eval('#banner', (e) => e.textContent), /still loading/);
      assert.deepStrictEqual(await page.$$eval('#models tbody tr td', (tds) => tds.map((t) => t.textContent)),
        ['tiny-tagger', 'tagger', 'loading']);
      assert.match(await page.$eval('#text-help', (e) => e.textContent), /No text search model is installed/);
      await shot('08-models-loading');
      await page.waitForFunction(() => document.querySelector('#banner').hidden, { timeout: 10000 });
      assert.ok((await page.$$eval('#models tbody tr', (trs) => trs.length)) >= 2, 'the real models after loading');
    } finally {
      page.off('request', onRequest);
      await page.setRequestInterception(false);
      allowNetworkErrors = false;
    }
  });

  await step('no console errors and no request left 127.0.0.1', async () => {
    assert.deepStrictEqual(consoleErrors, [], 'console errors');
    assert.deepStrictEqual(foreignRequests, [], 'external requests');
  });
  if (results.some((r) => !r.ok)) log(`server log tail:\n${serverLog()}`);
}

async function cleanup() {
  // Last set up, first torn down: the browser, then the server, then the directories they used.
  for (const c of cleanups.splice(0).reverse()) {
    try { await c(); } catch (e) { log(`cleanup: ${e.message}`); }
  }
}

const watchdog = setTimeout(async () => {
  log(`FAIL the browser test ran over ${TOTAL_BUDGET_MS} ms`);
  await cleanup();
  process.exit(1);
}, TOTAL_BUDGET_MS);

(async () => {
  const t0 = Date.now();
  let fatal = null;
  try {
    await main();
  } catch (e) {
    fatal = e;
    log(`FAIL set-up: ${e && e.stack ? e.stack : e}`);
  } finally {
    await cleanup();
    clearTimeout(watchdog);
  }
  const failed = results.filter((r) => !r.ok);
  log(`\nweb browser test: ${results.length - failed.length} passed, ${failed.length} failed${fatal ? ', set-up failed' : ''} `
    + `in ${((Date.now() - t0) / 1000).toFixed(1)} s; screenshots in ${SHOTS}`);
  for (const f of failed) log(`  failed: ${f.name}: ${f.error && f.error.message}`);
  process.exit(failed.length || fatal ? 1 : 0);
})();
