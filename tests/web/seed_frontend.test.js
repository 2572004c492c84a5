#!/usr/bin/env node
// The seed's demo frontend against acg2vec, unchanged in how it calls the API (issue 21): a stand-in
// page (tests/web/seed-frontend/, built for the public path /acg2vec/ like the seed's) makes the four
// demo calls as the seed's axios instance does — XHR, 50 s timeout, X-Custom-Header: foobar, multipart
// part "image", query tag/text — and renders imageUrls[0].large. Run in Debian's headless Chromium
// with puppeteer-core:
//   1. cross-origin, as the seed ran: the page on a small node static server on another 127.0.0.1 port,
//      the API started with --cors-origin for that origin;
//   2. same-origin: the page copied into acg2vec's --web-root under /acg2vec/, a search, then a reload
//      on the deep link the page's router wrote into the address bar.
// The collection holds four items, half of them stored without an extend record (one by `acg2vec
// ingest`, one by /v1/items); the packs are the random-weight seed packs (tools/make_test_packs.py).
// Every rendered result is compared with the API's own answer to the same request.
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
const PAGE = path.join(__dirname, 'seed-frontend');
const SHOTS = path.join(BUILD, 'web-screenshots', 'seed-frontend');
const TOTAL_BUDGET_MS = 200000;
const STEP_TIMEOUT_MS = 40000;

// Real images with licences in tests/data/images/real/SOURCE.md.
const REAL = path.join(SOURCE, 'tests', 'data', 'images', 'real');
const WITH_EXTEND = { 1001: 'demo_lucy_happy.png', 1002: 'demo_eileen_happy.png' };
const VIA_V1 = 'thequestion_sylvie_blue_normal.png';
const VIA_INGEST = 'demo_bg_washington.jpg';
const QUERY = 'demo_lucy_happy.png';

const results = [];
const cleanups = [];
const consoleErrors = [];
let page;

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
    if (page) {
      fs.mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: path.join(SHOTS, `failed-${name.replace(/[^a-z0-9]+/gi, '-')}.png`) }).catch(() => {});
    }
  } finally {
    clearTimeout(timer);
  }
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 180000, ...opts });
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
        resolve({ status: res.statusCode, headers: res.headers, json, text });
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    if (body) req.write(body);
    req.end();
  });
}

function multipart(fields, files) {
  const boundary = `----seedfrontend${Date.now().toString(16)}`;
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

const typeOf = (f) => (/\.png$/i.test(f) ? 'image/png' : 'image/jpeg');

/** The seed packs (random weights under the seed's names), made once in the build tree as packs.py does. */
function seedPacks(tmp) {
  const out = path.join(BUILD, 'test-packs', 'seed');
  if (!fs.existsSync(path.join(out, '.made'))) {
    run('/usr/bin/python3', [path.join(SOURCE, 'tools', 'make_test_packs.py'), out]);
    fs.writeFileSync(path.join(out, '.made'), '');
  }
  const models = path.join(tmp, 'models');
  fs.mkdirSync(models);
  for (const p of ['deepdanbooru-test', 'illust2vec-test', 'pix2score-test', 'acgvoc2vec-test', 'dclip-test']) {
    fs.symlinkSync(path.join(out, p), path.join(models, p));
  }
  return models;
}

/** The page's own origin: a static file server on another port (the seed's page was hosted apart
 * from its API). */
function startStatic(root) {
  const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css',
    '.png': 'image/png', '.jpg': 'image/jpeg' };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/favicon.ico') { res.writeHead(204); res.end(); return; }
    let file = path.normalize(path.join(root, decodeURIComponent(url.pathname)));
    if (!file.startsWith(root)) { res.writeHead(403); res.end(); return; }
    if (url.pathname.endsWith('/')) file = path.join(file, 'index.html');
    fs.readFile(file, (err, data) => {
      if (err) { res.writeHead(404); res.end('not found'); return; }
      res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream' });
      res.end(data);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    cleanups.push(() => new Promise((r) => server.close(() => r())));
    resolve(server.address().port);
  }));
}

/** The page as a build of the seed's frontend is deployed under /acg2vec/: its files in
 * ROOT/acg2vec/, and its index.html also at ROOT/index.html, the page the single-page-app fallback
 * answers deep links with. */
function installPage(root) {
  fs.mkdirSync(path.join(root, 'acg2vec'), { recursive: true });
  for (const f of fs.readdirSync(PAGE)) fs.copyFileSync(path.join(PAGE, f), path.join(root, 'acg2vec', f));
  fs.copyFileSync(path.join(PAGE, 'index.html'), path.join(root, 'index.html'));
}

async function startApi(tmp, models, pageOrigin, webRoot) {
  const data = path.join(tmp, 'data');
  const ingest = path.join(tmp, 'ingest');
  fs.mkdirSync(ingest);
  fs.copyFileSync(path.join(REAL, VIA_INGEST), path.join(ingest, VIA_INGEST));
  run(BIN, ['--data-dir', data, '--models-dir', models, 'ingest', ingest]);
  const portFile = path.join(tmp, 'port');
  const logPath = path.join(tmp, 'server.log');
  const logFile = fs.openSync(logPath, 'a');
  const proc = spawn(BIN, ['--data-dir', data, '--models-dir', models, 'serve', '--host', '127.0.0.1', '--port', '0',
    '--port-file', portFile, '--threads', '4', '--web-root', webRoot, '--cors-origin', pageOrigin],
  { stdio: ['ignore', logFile, logFile] });
  cleanups.push(() => new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode) { resolve(); return; }
    const kill = setTimeout(() => proc.kill('SIGKILL'), 10000);
    proc.once('exit', () => { clearTimeout(kill); resolve(); });
    proc.kill('SIGTERM');
  }));
  const serverLog = () => fs.readFileSync(logPath, 'utf8');
  const deadline = Date.now() + 90000;
  let port = 0;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}: ${serverLog().slice(-3000)}`);
    if (!port && fs.existsSync(portFile)) port = Number(fs.readFileSync(portFile, 'utf8')) || 0;
    if (port) {
      const r = await request(port, 'GET', '/health').catch(() => ({ status: 0 }));
      if (r.status === 200) return { port, serverLog };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server did not become ready: ${serverLog().slice(-3000)}`);
}

/** Fills the collection: two items with a pixiv-style extend record whose images live on the page's
 * host (as pixiv's did on theirs), one added by /v1/items without metadata; the fourth was ingested. */
async function fillCollection(port, staticPort) {
  for (const [id, file] of Object.entries(WITH_EXTEND)) {
    const url = `http://127.0.0.1:${staticPort}/pics/${file}`;
    const extend = { id: Number(id), title: `extend ${file}`, imageUrls: [{ squareMedium: url, medium: url, large: url, original: url }] };
    const mp = multipart({ extend: JSON.stringify(extend) }, { file: [file, fs.readFileSync(path.join(REAL, file)), typeOf(file)] });
    const r = await request(port, 'POST', `/images/${id}`, mp);
    assert.strictEqual(r.status, 200, `POST /images/${id}: ${r.text}`);
  }
  const mp = multipart({ id: 'sylvie' }, { file: [VIA_V1, fs.readFileSync(path.join(REAL, VIA_V1)), typeOf(VIA_V1)] });
  const r = await request(port, 'POST', '/v1/items', mp);
  assert.strictEqual(r.status, 201, `POST /v1/items: ${r.text}`);
  const list = await request(port, 'GET', '/v1/items?limit=10');
  assert.strictEqual(list.json.data.length, 4, 'four items');
  assert.strictEqual(list.json.data.filter((it) => Object.keys(it.metadata).length === 0).length, 2, 'half without extend');
}

/** What the API answers the page's four calls (asked by node, with the page's inputs). */
async function apiAnswers(port, tag, text) {
  const file = fs.readFileSync(path.join(REAL, QUERY));
  const [words, dclip, score, similar] = await Promise.all([
    request(port, 'GET', `/acgvoc2vec?tag=${encodeURIComponent(tag)}`),
    request(port, 'GET', `/searchIllustByDCLIP?text=${encodeURIComponent(text)}`),
    request(port, 'POST', '/pix2score', multipart({}, { image: [QUERY, file, 'image/png'] })),
    request(port, 'POST', '/similarityImages', multipart({}, { image: [QUERY, file, 'image/png'] })),
  ]);
  for (const r of [words, dclip, score, similar]) assert.strictEqual(r.status, 200, r.text);
  const level = (v) => String(v.indexOf(Math.max(...v)) + 1);
  return {
    words: words.json.data,
    dclip: dclip.json.data.map((i) => i.imageUrls[0].large),
    levels: ['bookmarkPredict', 'viewPredict', 'sanityPredict'].map((h) => level(score.json.data[h])),
    similar: similar.json.data.map((i) => i.imageUrls[0].large),
    similarIds: similar.json.data.map((i) => String(i.id)),
  };
}

const shown = (sel) => page.$$eval(`${sel} img`, (imgs) => imgs.map((i) => i.getAttribute('src')));
const allLoaded = (sel) => page.waitForFunction((s) => {
  const imgs = [...document.querySelectorAll(`${s} img`)];
  return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
}, { timeout: 15000 }, sel);

async function useAllFourModules(expected, tag, text) {
  await page.type('#tag', tag);
  await page.click('#tag-go');
  await page.waitForSelector('#words[data-done]');
  assert.deepStrictEqual(await page.$$eval('#words span', (s) => s.map((e) => e.textContent)), expected.words);

  await page.type('#text', text);
  await page.click('#text-go');
  await page.waitForSelector('#dclip[data-done]');
  assert.deepStrictEqual(await shown('#dclip'), expected.dclip);
  await allLoaded('#dclip');

  const file = path.join(REAL, QUERY);
  await (await page.$('#score-file')).uploadFile(file);
  await page.waitForSelector('#radar[data-done]');
  assert.deepStrictEqual(await page.$$eval('#radar li', (l) => l.map((e) => e.textContent)), expected.levels);

  await (await page.$('#similar-file')).uploadFile(file);
  await page.waitForSelector('#similar[data-done]');
  assert.deepStrictEqual(await shown('#similar'), expected.similar);
  assert.strictEqual(await page.$eval('#similar img', (i) => i.dataset.id), '1001', 'the same image comes first');
  await allLoaded('#similar');
  assert.strictEqual(await page.$eval('#toast', (e) => e.textContent), '', 'the page reported an error');
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
  fs.rmSync(SHOTS, { recursive: true, force: true });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'acg2vec-seedfe-'));
  cleanups.push(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const models = seedPacks(tmp);

  const site = path.join(tmp, 'site');
  installPage(site);
  fs.mkdirSync(path.join(site, 'pics'));
  for (const f of Object.values(WITH_EXTEND)) fs.copyFileSync(path.join(REAL, f), path.join(site, 'pics', f));
  const staticPort = await startStatic(site);
  const pageOrigin = `http://127.0.0.1:${staticPort}`;
  const webRoot = path.join(tmp, 'webroot');
  installPage(webRoot);

  const { port, serverLog } = await startApi(tmp, models, pageOrigin, webRoot);
  const api = `http://127.0.0.1:${port}`;
  await fillCollection(port, staticPort);
  const tag = 'long_hair';
  const text = '1girl, blue eyes';
  const expected = await apiAnswers(port, tag, text);
  assert.strictEqual(expected.similar.length, 4);
  assert.ok(expected.similar.some((u) => u.startsWith(`${api}/v1/items/`)), 'items without extend link acg2vec thumbnails');
  assert.ok(expected.similar.some((u) => u.startsWith(`${pageOrigin}/pics/`)), 'items with extend keep their URLs');

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
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  const apiCalls = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (r.method() !== 'OPTIONS' && u.port === String(port) && ['/acgvoc2vec', '/searchIllustByDCLIP', '/pix2score', '/similarityImages'].includes(u.pathname)) {
      apiCalls.push({ header: r.headers()['x-custom-header'], path: u.pathname, pageOrigin: new URL(page.url()).origin });
    }
  });

  await step('the preflight allows the header the page asks for', async () => {
    const r = await request(port, 'OPTIONS', '/similarityImages', { headers: {
      Origin: pageOrigin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'x-custom-header',
    } });
    assert.ok(r.status === 200 || r.status === 204, `preflight answered ${r.status}: ${r.text}`);
    assert.strictEqual(r.headers['access-control-allow-origin'], pageOrigin);
    const allowed = (r.headers['access-control-allow-headers'] || '').toLowerCase();
    assert.ok(allowed === '*' || allowed.split(/\s*,\s*/).includes('x-custom-header'), `allowed headers: ${allowed}`);
    assert.ok(Number(r.headers['access-control-max-age']) > 0, 'no Access-Control-Max-Age');
  });

  await step('cross-origin: the four demo modules work and render imageUrls[0].large', async () => {
    const logBefore = serverLog().length;
    await page.goto(`${pageOrigin}/acg2vec/?api=${encodeURIComponent(api)}`, { waitUntil: 'load' });
    await page.waitForSelector('body[data-ready]');
    await useAllFourModules(expected, tag, text);
    assert.deepStrictEqual([...new Set(apiCalls.map((c) => c.path))].sort(),
      ['/acgvoc2vec', '/pix2score', '/searchIllustByDCLIP', '/similarityImages']);
    for (const c of apiCalls) {
      assert.strictEqual(c.header, 'foobar', `${c.path} without X-Custom-Header`);
      assert.strictEqual(c.pageOrigin, pageOrigin, `${c.path} was not made from the page's origin`);
    }
    // The browser's own preflights (the custom header makes every call need one).
    const preflights = serverLog().slice(logBefore).match(/OPTIONS \/\w+ 20[04]/g) || [];
    assert.ok(preflights.length >= 4, `preflights seen: ${preflights.join(', ')}`);
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, '01-cross-origin.png'), fullPage: true });
  });

  await step('same origin under /acg2vec/: search, then reload on the deep link', async () => {
    apiCalls.length = 0;
    const first = await page.goto(`${api}/acg2vec/`, { waitUntil: 'load' });
    assert.strictEqual(first.status(), 200);
    await page.waitForSelector('body[data-ready]');
    await useAllFourModules(expected, tag, text);
    assert.ok(apiCalls.length >= 4 && apiCalls.every((c) => c.pageOrigin === api && c.header === 'foobar'), 'same-origin calls');
    const deep = page.url();
    assert.strictEqual(new URL(deep).pathname, '/acg2vec/search/dclip', `the router wrote ${deep}`);
    const again = await page.reload({ waitUntil: 'load' });
    assert.strictEqual(again.status(), 200, `reload of ${deep} answered ${again.status()}`);
    assert.match(again.headers()['content-type'] || '', /^text\/html/);
    assert.strictEqual(page.url(), deep);
    await page.waitForSelector('body[data-ready]');
    await page.waitForSelector('#dclip[data-done]');
    assert.deepStrictEqual(await shown('#dclip'), expected.dclip, 'the deep link restored the search');
    await allLoaded('#dclip');
    await page.screenshot({ path: path.join(SHOTS, '02-same-origin-deep-link.png'), fullPage: true });
    // An API path is never answered with the page.
    const apiMiss = await request(port, 'GET', '/v1/items/no-such-item', { headers: { Accept: 'text/html' } });
    assert.strictEqual(apiMiss.status, 404);
    assert.ok(apiMiss.json && apiMiss.json.message, 'an unknown API path got the page');
  });

  await step('no console errors', async () => {
    assert.deepStrictEqual(consoleErrors, []);
  });
  if (results.some((r) => !r.ok)) log(`server log tail:\n${serverLog().slice(-3000)}`);
}

async function cleanup() {
  for (const c of cleanups.splice(0).reverse()) {
    try { await c(); } catch (e) { log(`cleanup: ${e.message}`); }
  }
}

const watchdog = setTimeout(async () => {
  log(`FAIL the seed frontend test ran over ${TOTAL_BUDGET_MS} ms`);
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
  log(`\nseed frontend browser test: ${results.length - failed.length} passed, ${failed.length} failed${fatal ? ', set-up failed' : ''} `
    + `in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  for (const f of failed) log(`  failed: ${f.name}: ${f.error && f.error.message}`);
  process.exit(failed.length || fatal ? 1 : 0);
})();
