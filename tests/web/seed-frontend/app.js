// The seed frontend's calls, made as axios makes them from a browser: XMLHttpRequest, JSON answers,
// a 50 s timeout and the custom header the seed's axios instance adds (which forces a CORS preflight).
'use strict';

const PUBLIC_PATH = '/acg2vec/';
// The seed hard-codes its API host; here a test passes it as ?api=..., and without it the API is
// the page's own origin (served from acg2vec's web root).
const params = new URLSearchParams(location.search);
const API = (params.get('api') || '').replace(/\/$/, '');

function request(method, url, body) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, API + url, true);
    xhr.timeout = 50000;
    xhr.setRequestHeader('Accept', 'application/json, text/plain, */*');
    xhr.setRequestHeader('X-Custom-Header', 'foobar');
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
      else reject(new Error(`Request failed with status code ${xhr.status}`));
    };
    // A request the browser blocks (CORS) ends in onerror; the seed's page shows both as a timeout.
    xhr.onerror = () => reject(new Error('Request timed out'));
    xhr.ontimeout = () => reject(new Error('Request timed out'));
    xhr.send(body || null);
  });
}

function toast(message) { document.getElementById('toast').textContent = message; }

// The seed's waterfall: imageUrls[0].large with pixiv's host swapped for the proxy it used.
function renderIllusts(target, illusts) {
  const urls = illusts.map((i) => ({ id: i.id, title: i.title, src: i.imageUrls[0].large.replace('i.pximg.net', 'i.pixiv.re') }));
  const box = document.getElementById(target);
  box.textContent = '';
  for (const u of urls) {
    const img = document.createElement('img');
    img.src = u.src;
    img.title = u.title;
    img.dataset.id = String(u.id);
    box.appendChild(img);
  }
  box.dataset.done = String(urls.length);
}

function upload(file) {
  const form = new FormData();
  form.append('image', file);
  return form;
}

async function similarTags(tag) {
  const res = await request('GET', `/acgvoc2vec?tag=${encodeURIComponent(tag)}`);
  const box = document.getElementById('words');
  box.textContent = '';
  for (const w of res.data) {
    const span = document.createElement('span');
    span.textContent = w;
    box.appendChild(span);
  }
  box.dataset.done = String(res.data.length);
}

async function dclip(text) {
  const res = await request('GET', `/searchIllustByDCLIP?text=${encodeURIComponent(text)}`);
  renderIllusts('dclip', res.data);
}

const guard = (p) => p.catch((e) => toast(e.message));

document.getElementById('tag-go').addEventListener('click', () => guard(similarTags(document.getElementById('tag').value)));
document.getElementById('text-go').addEventListener('click', () => {
  const text = document.getElementById('text').value;
  // The router keeps the search in the address bar: a deep link under the public path.
  history.pushState(null, '', `${PUBLIC_PATH}search/dclip?${new URLSearchParams({ ...Object.fromEntries(params), text })}`);
  showRoute();
  guard(dclip(text));
});
document.getElementById('score-file').addEventListener('change', (ev) => guard((async () => {
  const res = await request('POST', '/pix2score', upload(ev.target.files[0]));
  const list = document.getElementById('radar');
  list.textContent = '';
  for (const head of ['bookmarkPredict', 'viewPredict', 'sanityPredict']) {
    const v = res.data[head];
    const li = document.createElement('li');
    li.dataset.head = head;
    li.textContent = String(v.indexOf(Math.max(...v)) + 1);
    list.appendChild(li);
  }
  list.dataset.done = '3';
})()));
document.getElementById('similar-file').addEventListener('change', (ev) => guard((async () => {
  const res = await request('POST', '/similarityImages', upload(ev.target.files[0]));
  renderIllusts('similar', res.data);
})()));

function showRoute() { document.getElementById('route').textContent = location.pathname.slice(PUBLIC_PATH.length - 1); }

// The router: the page lives under PUBLIC_PATH; a deep link restores its search.
if (!location.pathname.startsWith(PUBLIC_PATH)) history.replaceState(null, '', PUBLIC_PATH + location.search);
showRoute();
if (location.pathname === `${PUBLIC_PATH}search/dclip` && params.get('text')) {
  document.getElementById('text').value = params.get('text');
  guard(dclip(params.get('text')));
}
document.body.dataset.ready = 'true';
