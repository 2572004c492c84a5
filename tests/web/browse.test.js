#!/usr/bin/env node
// Browser test of the page's Browse, item, Duplicates and Caption views (web/browse.js, web/caption.js):
// the real binary on 127.0.0.1 with a collection of real images and captioning fixtures (whose tags
// are known from their pixels: tools/make_caption_fixtures.py), ingested with the fixed-score tagger and
// the tiny tagger and the nsfwjs classifier (its probabilities are the items' scores), driven through Debian's headless Chromium with puppeteer-core.
// Each check compares what the page renders with the API's own answer for the same request, and the
// request with what the user chose. GET /v1/duplicates and its resolve route are served from a fixture
// (request interception) in the steps that need them; without it the server answers 404 and the item
// page must say duplicates are unavailable. Screenshots go to $ACG2VEC_BUILD_DIR/web-screenshots/browse-*.
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
const TOTAL_BUDGET_MS = 200000;
const STEP_TIMEOUT_MS = 30000;

const REAL = path.join(SOURCE, 'tests', 'data', 'images', 'real');
const REAL_IMAGES = ['demo_lucy_happy.png', 'demo_eileen_happy.png', 'thequestion_sylvie_blue_normal.png',
  'demo_bg_washington.jpg', 'thequestion_bg_uni.jpg'];
const FIXTURES = path.join(SOURCE, 'tests', 'data', 'images', 'captions');
const FIXTURE_IMAGES = Array.from({ length: 10 }, (_, i) => `img_${String(i).padStart(3, '0')}.png`);

const results = [];
const cleanups = [];
let page;
let allowed = null; // a RegExp of console errors the current step may cause
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
    allowed = null;
  }
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 600000, ...opts });
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
  for (const [k, v] of fields) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  }
  for (const [k, [name, data, type]] of Object.entries(files)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"; filename="${name}"\r\nContent-Type: ${type}\r\n\r\n`));
    parts.push(data, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` } };
}

function preparePacks(tmp) {
  const env = { ...process.env, ACG2VEC_BUILD_DIR: BUILD, ACG2VEC_SOURCE_DIR: SOURCE };
  const integration = path.join(SOURCE, 'tests', 'integration');
  const tiny = run(PY, [path.join(integration, 'fixture_cache.py'), 'tiny-packs'], { cwd: SOURCE, env }).trim();
  const captions = run(PY, ['-c', 'import caption_reference as r; print(r.caption_packs())'], { cwd: integration, env }).trim();
  const models = path.join(tmp, 'models');
  fs.mkdirSync(models);
  fs.symlinkSync(path.join(captions, 'fixed-tagger'), path.join(models, 'fixed-tagger'));
  fs.symlinkSync(path.join(tiny, 'tiny-tagger'), path.join(models, 'tiny-tagger'));
  // The classifier's probabilities are the items' scores (they differ from image to image).
  const all = run(PY, [path.join(integration, 'fixture_cache.py'), 'packs'], { cwd: SOURCE, env }).trim();
  fs.symlinkSync(path.join(all, 'nsfw-mobilenet-v2'), path.join(models, 'nsfw-mobilenet-v2'));
  return models;
}

async function startServer(tmp, models) {
  const data = path.join(tmp, 'data');
  const images = path.join(tmp, 'images');
  fs.mkdirSync(images);
  for (const f of REAL_IMAGES) fs.copyFileSync(path.join(REAL, f), path.join(images, f));
  for (const f of FIXTURE_IMAGES) fs.copyFileSync(path.join(FIXTURES, f), path.join(images, f));
  run(BIN, ['--data-dir', data, '--models-dir', models, 'ingest', images]);
  const portFile = path.join(tmp, 'port');
  const logFile = fs.openSync(path.join(tmp, 'server.log'), 'a');
  const proc = spawn(BIN, ['--data-dir', data, '--models-dir', models, 'serve', '--host', '127.0.0.1',
    '--port', '0', '--port-file', portFile, '--threads', '4', '--web-root', path.join(SOURCE, 'web')],
  { stdio: ['ignore', logFile, logFile] });
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
      if (r.status === 200) return { port, serverLog };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server did not become ready: ${serverLog()}`);
}

async function shot(name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `browse-${name}.png`), fullPage: true });
}

/** Reads a zip with Python's zipfile (an independent reader): names, texts, and whether every CRC checks. */
function readZip(file) {
  const script = 'import json, sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\n'
    + 'print(json.dumps({"bad": z.testzip(), "methods": [i.compress_type for i in z.infolist()],'
    + ' "files": {i.filename: z.read(i).decode("utf-8") for i in z.infolist()}}))';
  return JSON.parse(run(PY, ['-c', script, file]));
}

async function main() {
  for (const [what, p] of [['the binary', BIN], ['Chromium', CHROMIUM]]) {
    if (!fs.existsSync(p)) throw new Error(`${what} is missing at ${p} (run scripts/setup.sh and build)`);
  }
  const puppeteer = require(path.join(SOURCE, 'tools', 'node_modules', 'puppeteer-core'));
  for (const f of fs.existsSync(SHOTS) ? fs.readdirSync(SHOTS) : []) {
    if (f.startsWith('browse-')) fs.rmSync(path.join(SHOTS, f)); // no stale screenshot of this test
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'acg2vec-browse-'));
  cleanups.push(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const models = preparePacks(tmp);
  const { port, serverLog } = await startServer(tmp, models);
  const base = `http://127.0.0.1:${port}`;
  const apiGet = async (p) => {
    const r = await request(port, 'GET', p);
    assert.strictEqual(r.status, 200, `GET ${p}: ${r.text}`);
    return r.json;
  };
  log(`server on ${base}`);

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
    if (allowed && allowed.test(m.text())) return;
    consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(`${base}/`) && !u.startsWith('blob:') && !u.startsWith('data:')) foreignRequests.push(u);
  });

  // The page's grid: ids in order, and the query it was loaded with.
  const grid = () => page.$eval('#browse-grid', (g) => ({
    ids: [...g.querySelectorAll('.tile')].map((t) => t.dataset.id), query: g.dataset.query || '',
  }));
  const waitGrid = (test) => page.waitForFunction((src) => {
    const g = document.querySelector('#browse-grid');
    // eslint-disable-next-line no-new-func
    return g.dataset.query !== undefined && new Function('q', `return ${src}`)(new URLSearchParams(g.dataset.query))
      && !/Loading/.test(document.querySelector('#browse-status').textContent);
  }, {}, test);
  const apiIds = async (query) => (await apiGet(`/v1/items?${query}`)).data.map((i) => String(i.id));
  const total = REAL_IMAGES.length + FIXTURE_IMAGES.length;

  await step('the grid shows the collection newest first, with paging', async () => {
    await page.goto(`${base}/#browse`, { waitUntil: 'networkidle0' });
    await waitGrid("q.get('limit') === '24'");
    const g = await grid();
    assert.deepStrictEqual(g.ids, await apiIds('limit=24'), 'the first page is the plain listing');
    assert.strictEqual(g.ids.length, total);
    assert.match(await page.$eval('#browse-status', (e) => e.textContent), new RegExp(`^${total} items match`));
    await page.select('#b-size', '12');
    await waitGrid("q.get('limit') === '12' && q.get('offset') === '0'");
    assert.deepStrictEqual((await grid()).ids, await apiIds('limit=12'));
    assert.strictEqual(await page.$eval('#b-page', (e) => e.textContent), 'Page 1 of 2');
    await page.click('#b-next');
    await waitGrid("q.get('offset') === '12'");
    const second = await grid();
    assert.deepStrictEqual(second.ids, await apiIds('offset=12&limit=12'));
    assert.strictEqual(second.ids.length, total - 12);
    assert.ok(await page.$eval('#b-next', (b) => b.disabled), 'Next is disabled on the last page');
    await page.click('#b-prev');
    await waitGrid("q.get('offset') === '0'");
    await page.waitForFunction(() => [...document.querySelectorAll('#browse-grid img')].every((i) => i.complete && i.naturalWidth > 0));
    await page.$eval('#browse', (e) => e.scrollIntoView());
    await shot('01-grid');
  });

  await step('tag filters: all/none with autocomplete from /v1/tags, by keyboard', async () => {
    const expected = (await apiGet('/v1/tags?prefix=1g&limit=10')).data;
    assert.ok(expected.length >= 1 && expected[0].name === '1girl', JSON.stringify(expected));
    await page.focus('#b-all');
    await page.keyboard.type('1g');
    await page.waitForFunction(() => !document.querySelector('#b-suggest').hidden);
    const shown = await page.$$eval('#b-suggest li', (lis) => lis.map((l) => [l.dataset.name, Number(l.querySelector('.count').textContent)]));
    assert.deepStrictEqual(shown, expected.map((t) => [t.name, t.count]));
    assert.strictEqual(await page.$eval('#b-all', (e) => e.getAttribute('aria-expanded')), 'true');
    await shot('02-autocomplete');
    await page.keyboard.press('ArrowDown');
    assert.strictEqual(await page.$eval('#b-all', (e) => e.getAttribute('aria-activedescendant')), 'b-opt-0');
    await page.keyboard.press('Enter');
    assert.strictEqual(await page.$eval('#b-all', (e) => e.value), '1girl, ');
    assert.ok(await page.$eval('#b-suggest', (e) => e.hidden), 'the list closes after a choice');
    await page.focus('#b-none');
    await page.keyboard.type('ha');
    await page.waitForFunction(() => [...document.querySelectorAll('#b-suggest li')].some((l) => l.dataset.name === 'hat'));
    const hatIndex = await page.$$eval('#b-suggest li', (lis) => lis.findIndex((l) => l.dataset.name === 'hat'));
    for (let i = 0; i <= hatIndex; ++i) await page.keyboard.press('ArrowDown');
    await page.keyboard.press('Enter');
    assert.strictEqual(await page.$eval('#b-none', (e) => e.value), 'hat, ');
    await page.keyboard.press('Enter'); // the list is closed: Enter submits the form
    await waitGrid("q.get('tags') === '1girl' && q.get('none') === 'hat'");
    const g = await grid();
    const want = await apiGet(`/v1/items?${g.query}`);
    assert.deepStrictEqual(g.ids, want.data.map((i) => String(i.id)));
    assert.ok(want.total > 0 && want.total < total, `the filter keeps ${want.total} of ${total}`);
    for (const it of want.data) {
      const full = (await apiGet(`/v1/items/${encodeURIComponent(it.id)}`)).data;
      const names = Object.values(full.tags).flat().map((t) => t.name);
      assert.ok(names.includes('1girl') && !names.includes('hat'), `${it.id}: ${names}`);
    }
    assert.match(await page.$eval('#browse-status', (e) => e.textContent), new RegExp(`^${want.total} item`));
    await shot('03-tag-filter');
  });

  await step('rating, score range and sort by score', async () => {
    await page.click('#b-reset');
    await waitGrid("!q.get('tags')");
    const ratings = await page.$$eval('#b-rating option', (o) => o.map((x) => x.value).filter(Boolean));
    const apiRatings = (await apiGet('/v1/tags?prefix=rating:&limit=20')).data.map((t) => t.name.slice(7));
    // Bare WD rating names count as ratings too (after the prefixed ones, in this order).
    for (const bare of ['general', 'sensitive', 'questionable', 'explicit']) {
      const found = (await apiGet(`/v1/tags?prefix=${bare}&limit=50`)).data.some((t) => t.name === bare);
      if (found && !apiRatings.includes(bare)) apiRatings.push(bare);
    }
    assert.deepStrictEqual(ratings, apiRatings);
    const key = 'nsfw-mobilenet-v2:Drawing';
    assert.ok((await page.$$eval('#b-score option', (o) => o.map((x) => x.value))).includes(key));
    await page.select('#b-score', key);
    await page.type('#b-min', '0');
    await page.select('#b-sort', 'score');
    await waitGrid("q.get('sort') === 'score'");
    await page.select('#b-order', 'asc');
    await waitGrid("q.get('sort') === 'score' && q.get('order') === 'asc' && q.get('score_min') === '0'");
    const g = await grid();
    const want = await apiGet(`/v1/items?${g.query}`);
    assert.deepStrictEqual(g.ids, want.data.map((i) => String(i.id)));
    const values = want.data.map((i) => i.scores['nsfw-mobilenet-v2'].Drawing);
    assert.deepStrictEqual(values, [...values].sort((a, b) => a - b), 'ascending by the score');
    assert.ok(new Set(values).size > values.length / 2, 'the scores differ between items');
    await page.select('#b-rating', ratings[0]);
    await waitGrid(`q.get('rating') === '${ratings[0]}'`);
    const r = await grid();
    assert.deepStrictEqual(r.ids, await apiIds(r.query));
  });

  // A server without the duplicate finder: /v1/duplicates answers 404, as it does when the
  // route is not registered.
  const withoutDuplicates = async (fn) => {
    const onRequest = (r) => {
      if (r.isInterceptResolutionHandled()) return;
      if (new URL(r.url()).pathname.startsWith('/v1/duplicates')) {
        r.respond({ status: 404, contentType: 'application/json',
          body: JSON.stringify({ message: 'no route', error: 'not_found' }) });
      } else {
        r.continue();
      }
    };
    await page.setRequestInterception(true);
    page.on('request', onRequest);
    try { await fn(); } finally {
      page.off('request', onRequest);
      await page.setRequestInterception(false);
    }
  };

  let opened = '';
  await step('item page: tags with scores, scores, similar items; no duplicates service (404)', () => withoutDuplicates(async () => {
    allowed = /status of 404/;
    await page.click('#b-reset');
    await waitGrid("!q.get('rating') && !q.get('score')");
    opened = (await grid()).ids[0];
    await page.click(`#browse-grid .tile[data-id="${opened}"] button.open`);
    await page.waitForFunction(() => document.querySelector('#item').open);
    const item = (await apiGet(`/v1/items/${encodeURIComponent(opened)}`)).data;
    assert.strictEqual(await page.evaluate(() => document.activeElement.id), 'item-close', 'focus moves into the dialog');
    const tags = await page.$$eval('#item-tags details', (ds) => Object.fromEntries(ds.map((d) => [d.dataset.tagger,
      [...d.querySelectorAll('.bar')].map((b) => [b.dataset.tag, Number(b.querySelector('.value').textContent)])])));
    const wantTags = Object.fromEntries(Object.entries(item.tags).map(([k, l]) => [k, l.map((t) => [t.name, Number(t.score.toFixed(2))])]));
    assert.deepStrictEqual(tags, wantTags);
    assert.ok(tags['fixed-tagger'] && tags['tiny-tagger'], 'both taggers are shown');
    const scores = await page.$$eval('#item-scores tbody tr', (rows) => rows.map((r) => r.dataset.score));
    assert.deepStrictEqual(scores.sort(), Object.entries(item.scores).flatMap(([s, v]) => Object.keys(v).map((k) => `${s}:${k}`)).sort());
    await page.waitForFunction(() => document.querySelector('#item-similar .tile'));
    const similar = await page.$$eval('#item-similar .tile', (t) => t.map((x) => x.dataset.id));
    assert.deepStrictEqual(similar, await apiIds(`like=${encodeURIComponent(opened)}&limit=8`));
    await page.waitForFunction(() => /not available/.test(document.querySelector('#item-dups').textContent));
    await shot('04-item-page');
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !document.querySelector('#item').open);
  }));

  // The duplicates fixture: the shape of GET /v1/duplicates (i24), over real ids of this collection.
  const ids = await apiIds('limit=100');
  const fixture = {
    groups: [
      { id: 'g1', keep: ids[2], members: [
        { id: ids[2], source: 'a.png', relation: 'keep', score: 1 },
        { id: ids[3], source: 'a-copy.jpg', relation: 'near_duplicate', score: 0.97 },
        { id: ids[4], source: 'a-smile.png', relation: 'variant', score: 0.93 }] },
      { keep: ids[6], members: [
        { id: ids[6], source: 'b.png', relation: 'keep', score: 1 },
        { id: ids[7], source: 'b-same.png', relation: 'exact', score: 1 }] },
    ],
  };
  const resolved = [];
  const intercept = async (fn) => {
    const onRequest = (r) => {
      if (r.isInterceptResolutionHandled()) return;
      const u = new URL(r.url());
      if (u.pathname === '/v1/duplicates' && r.method() === 'GET') {
        r.respond({ status: 200, contentType: 'application/json', body: JSON.stringify({ message: 'ok', data: fixture }) });
      } else if (/^\/v1\/duplicates\/[^/]+\/resolve$/.test(u.pathname) && r.method() === 'POST') {
        resolved.push({ path: u.pathname, body: JSON.parse(r.postData() || '{}') });
        r.respond({ status: 200, contentType: 'application/json', body: JSON.stringify({ message: 'resolved', data: {} }) });
      } else {
        r.continue();
      }
    };
    await page.setRequestInterception(true);
    page.on('request', onRequest);
    try { await fn(); } finally {
      page.off('request', onRequest);
      await page.setRequestInterception(false);
    }
  };

  await step('item page: its duplicates and variants, then delete', async () => {
    await intercept(async () => {
      await page.click(`#browse-grid .tile[data-id="${ids[3]}"] button.open`);
      await page.waitForFunction(() => document.querySelector('#item').open && document.querySelector('#item-dups li'));
      const rel = await page.$$eval('#item-dups li', (lis) => lis.map((l) => [l.dataset.id, l.dataset.relation, l.textContent]));
      assert.deepStrictEqual(rel.map((r) => [r[0], r[1]]), [[ids[2], 'keep'], [ids[4], 'variant']]);
      assert.match(rel[0][2], /suggested keeper/);
      assert.match(rel[1][2], /variant \(0\.930\)/);
      await shot('05-item-duplicates');
      await page.click('#item-delete');
      assert.strictEqual(await page.$eval('#item-delete', (b) => b.textContent), 'Confirm delete');
      assert.strictEqual((await request(port, 'GET', `/v1/items/${encodeURIComponent(ids[3])}`)).status, 200, 'one click deletes nothing');
      await page.click('#item-delete');
      await page.waitForFunction(() => !document.querySelector('#item').open);
      await waitGrid('true');
      await page.waitForFunction((n) => document.querySelector('#browse-status').textContent.startsWith(`${n} items`), {}, total - 1);
    });
    assert.strictEqual((await request(port, 'GET', `/v1/items/${encodeURIComponent(ids[3])}`)).status, 404);
    assert.ok(!(await grid()).ids.includes(ids[3]));
  });

  await step('Duplicates view: groups side by side, the keeper marked, resolve with the chosen copy', async () => {
    allowed = /status of 404/; // the fixture still names the item deleted above: its thumbnail is gone
    await intercept(async () => {
      await page.click('#dups-load');
      await page.waitForFunction(() => document.querySelectorAll('#dups-groups .dup-group').length === 2);
      const groups = await page.$$eval('#dups-groups .dup-group', (gs) => gs.map((g) => ({
        id: g.dataset.group,
        members: [...g.querySelectorAll('figure')].map((f) => {
          const r = f.getBoundingClientRect();
          return { id: f.dataset.id, relation: f.dataset.relation, keeper: f.classList.contains('keeper'),
            checked: f.querySelector('input').checked, top: Math.round(r.top), left: r.left };
        }),
      })));
      assert.deepStrictEqual(groups.map((g) => g.id), ['g1', '1'], 'a group without an id is named by its position');
      for (const [g, want] of groups.map((x, i) => [x, fixture.groups[i]])) {
        assert.deepStrictEqual(g.members.map((m) => [m.id, m.relation]), want.members.map((m) => [String(m.id), m.relation]));
        assert.deepStrictEqual(g.members.map((m) => m.keeper), want.members.map((m) => m.id === want.keep));
        assert.deepStrictEqual(g.members.map((m) => m.checked), want.members.map((m) => m.id === want.keep));
        assert.ok(g.members.every((m) => m.top === g.members[0].top), 'side by side');
        assert.ok(g.members.every((m, i) => i === 0 || m.left > g.members[i - 1].left), 'left to right');
      }
      await page.$eval('#dups', (e) => e.scrollIntoView());
      await shot('06-duplicates');
      // Keep the variant instead of the suggestion.
      await page.click(`.dup-group[data-group="g1"] figure[data-id="${ids[4]}"] input`);
      await page.click('.dup-group[data-group="g1"] button.resolve');
      await page.waitForFunction(() => document.querySelector('.dup-group[data-group="g1"]').classList.contains('resolved'));
      assert.deepStrictEqual(resolved, [{ path: '/v1/duplicates/g1/resolve', body: { keep: ids[4] } }]);
      await page.click('.dup-group[data-group="1"] button.resolve');
      await page.waitForFunction(() => document.querySelector('.dup-group[data-group="1"]').classList.contains('resolved'));
      assert.deepStrictEqual(resolved[1], { path: '/v1/duplicates/1/resolve', body: { keep: ids[6] } });
    });
  });

  await step('Duplicates view without the service says so', () => withoutDuplicates(async () => {
    allowed = /status of 404/;
    await page.click('#dups-load');
    await page.waitForFunction(() => /not available/.test(document.querySelector('#dups-status').textContent));
    assert.strictEqual(await page.$$eval('#dups-groups .dup-group', (g) => g.length), 0);
  }));

  await step('Caption panel: drop images, change a threshold, edit, download the zip', async () => {
    const files = FIXTURE_IMAGES.slice(0, 3);
    await page.waitForFunction(() => document.querySelectorAll('#cap-models input').length > 0);
    assert.deepStrictEqual(await page.$$eval('#cap-models input', (i) => i.map((x) => x.value)).then((v) => v.sort()),
      ['fixed-tagger', 'tiny-tagger']);
    // Only the fixed-score tagger, so the captions are the fixtures' own.
    await page.$$eval('#cap-models input', (inputs) => inputs.forEach((i) => { i.checked = i.value === 'fixed-tagger'; }));
    const payload = files.map((f) => ({ name: f, b64: fs.readFileSync(path.join(FIXTURES, f)).toString('base64') }));
    await page.$eval('#caption', (e) => e.scrollIntoView());
    await page.evaluate((list) => {
      const dt = new DataTransfer();
      for (const f of list) {
        const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
        dt.items.add(new File([bytes], f.name, { type: 'image/png' }));
      }
      document.querySelector('#cap-drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, payload);
    const captions = async (generation) => {
      await page.waitForFunction((g) => Number(document.querySelector('#cap-list').dataset.generation || 0) >= g, {}, generation);
      return page.$$eval('#cap-list .cap-item', (cs) => cs.map((c) => [c.dataset.name, c.querySelector('textarea').value,
        [...c.querySelectorAll('.tags li')].map((l) => l.dataset.tag)]));
    };
    const apiCaption = async (file, fields) => {
      const mp = multipart(fields, { image: [file, fs.readFileSync(path.join(FIXTURES, file)), 'image/png'] });
      const r = await request(port, 'POST', '/v1/caption', mp);
      assert.strictEqual(r.status, 200, r.text);
      return r.json.data;
    };
    const first = await captions(1);
    assert.deepStrictEqual(first.map((c) => c[0]), files);
    for (const [name, text, tags] of first) {
      const want = await apiCaption(name, [['model', 'fixed-tagger']]);
      assert.strictEqual(text, want.caption, name);
      assert.deepStrictEqual(tags, want.tags.map((t) => t.name));
    }
    // A lower general threshold: more tags, the API's answer for the same options.
    await page.$eval('#cap-general', (i) => { i.value = '0.15'; i.dispatchEvent(new Event('change', { bubbles: true })); });
    const lowered = await captions(2);
    let grew = 0;
    for (const [i, [name, text]] of lowered.entries()) {
      const want = await apiCaption(name, [['model', 'fixed-tagger'], ['general-threshold', '0.15']]);
      assert.strictEqual(text, want.caption, name);
      grew += text.split(', ').length > first[i][1].split(', ').length ? 1 : 0;
    }
    assert.ok(grew > 0, 'a lower threshold adds tags');
    // An edit survives and goes into the zip.
    await page.click('#cap-list .cap-item:nth-child(2) textarea');
    await page.keyboard.press('End');
    await page.keyboard.type(', my_tag');
    const texts = await page.$$eval('#cap-list textarea', (t) => t.map((x) => x.value));
    assert.ok(texts[1].endsWith(', my_tag'));
    await page.waitForFunction(() => !document.querySelector('#cap-zip').disabled);
    await shot('07-caption');
    const downloads = fs.mkdtempSync(path.join(tmp, 'dl-'));
    const cdp = await browser.target().createCDPSession();
    await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads, eventsEnabled: true });
    await page.click('#cap-zip');
    const zipPath = path.join(downloads, 'captions.zip');
    const deadline = Date.now() + 10000;
    while (!fs.existsSync(zipPath) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(fs.existsSync(zipPath), `no captions.zip in ${fs.readdirSync(downloads)}`);
    const z = readZip(zipPath);
    assert.strictEqual(z.bad, null, 'every CRC checks');
    assert.deepStrictEqual(z.methods, [0, 0, 0], 'stored');
    assert.deepStrictEqual(z.files, Object.fromEntries(files.map((f, i) => [f.replace(/\.png$/, '.txt'), `${texts[i]}\n`])));
  });

  await step('phone width: the new views do not overflow', async () => {
    await page.setViewport({ width: 375, height: 740, isMobile: true, hasTouch: true, deviceScaleFactor: 1 });
    await page.goto(`${base}/#browse`, { waitUntil: 'networkidle0' });
    await waitGrid('true');
    const over = await page.evaluate(() => {
      const w = document.documentElement.clientWidth;
      const wide = [...document.querySelectorAll('#browse *, #dups *, #caption *')].filter((e) => {
        const r = e.getBoundingClientRect();
        return r.width > 0 && (r.right > w + 0.5 || r.left < -0.5) && !e.closest('.visually-hidden, .dup-row');
      }).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`);
      return { scroll: document.documentElement.scrollWidth, w, wide: wide.slice(0, 5) };
    });
    assert.ok(over.scroll <= over.w, `page is ${over.scroll}px wide at ${over.w}px: ${over.wide.join(', ')}`);
    assert.deepStrictEqual(over.wide, []);
    await shot('08-phone');
    await page.setViewport({ width: 1200, height: 900 });
  });

  await step('no console errors and no request left 127.0.0.1', async () => {
    assert.deepStrictEqual(consoleErrors, [], 'console errors');
    assert.deepStrictEqual(foreignRequests, [], 'external requests');
  });
  if (results.some((r) => !r.ok)) log(`server log tail:\n${serverLog()}`);
}

async function cleanup() {
  for (const c of cleanups.splice(0).reverse()) {
    try { await c(); } catch (e) { log(`cleanup: ${e.message}`); }
  }
}

const watchdog = setTimeout(async () => {
  log(`FAIL the browse browser test ran over ${TOTAL_BUDGET_MS} ms`);
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
  log(`\nweb browse test: ${results.length - failed.length} passed, ${failed.length} failed${fatal ? ', set-up failed' : ''} `
    + `in ${((Date.now() - t0) / 1000).toFixed(1)} s; screenshots in ${SHOTS}`);
  for (const f of failed) log(`  failed: ${f.name}: ${f.error && f.error.message}`);
  process.exit(failed.length || fatal ? 1 : 0);
})();
