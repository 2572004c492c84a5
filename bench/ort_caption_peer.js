#!/usr/bin/env node
// ONNX Runtime captioning peer for `acg2vec bench caption`: captions a folder the way the popular
// WD14 tagger scripts do it, image by image: read the file, decode it (pure-JS jpeg-js / pngjs),
// composite transparency over white, pad to a white square, resize to the model's size, lay the
// pixels out as BGR float32 0..255 NHWC, one session.run per image, keep the rating with the
// highest score and the general/character tags above their thresholds, and write `<stem>.txt`.
// Prints one JSON line: images/s end to end, and the time inside session.run alone.
//   node bench/ort_caption_peer.js --onnx F --labels selected_tags.csv --dir D --size 448
//        [--out DIR] [--threads 2] [--general 0.35] [--character 0.85] [--max-files 0] [--channels BGR|RGB]
// Resizing: area averaging when shrinking (cv2.INTER_AREA, as kohya-ss sd-scripts does), linear
// interpolation when enlarging.
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');
const jpeg = require('jpeg-js');
const { PNG } = require('pngjs');

function args() {
  const a = { threads: 2, general: 0.35, character: 0.85, 'max-files': 0, out: '', channels: 'BGR' };
  for (let i = 2; i < process.argv.length; i += 2) a[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
  for (const k of ['onnx', 'labels', 'dir', 'size']) if (!a[k]) throw new Error(`missing --${k}`);
  return a;
}

function listImages(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    const isDir = e.isDirectory() || (e.isSymbolicLink() && fs.statSync(p).isDirectory());
    if (isDir) out.push(...listImages(p));
    else if (/\.(jpe?g|png)$/i.test(e.name)) out.push(p);
  }
  return out.sort();
}

// WD selected_tags.csv: tag_id,name,category,count (9 rating, 4 character, else general).
function readLabels(file) {
  const lines = fs.readFileSync(file, 'utf8').split(/\r?\n/).filter((l) => l.length > 0);
  const labels = [];
  for (const line of lines.slice(1)) {
    // Names may be quoted and hold commas.
    const cells = [];
    let cur = '', quoted = false;
    for (let i = 0; i < line.length; ++i) {
      const c = line[i];
      if (quoted) {
        if (c === '"' && line[i + 1] === '"') { cur += '"'; ++i; } else if (c === '"') quoted = false; else cur += c;
      } else if (c === '"') quoted = true;
      else if (c === ',') { cells.push(cur); cur = ''; } else cur += c;
    }
    cells.push(cur);
    labels.push({ name: cells[1], category: Number(cells[2]) });
  }
  return labels;
}

// RGBA bytes of a JPEG or PNG file.
function decode(bytes) {
  if (bytes[0] === 0x89 && bytes[1] === 0x50) {
    const png = PNG.sync.read(bytes);
    return { width: png.width, height: png.height, rgba: png.data };
  }
  const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024 });
  return { width: img.width, height: img.height, rgba: img.data };
}

// Per output index: the source indices and weights along one axis.
function axisWeights(src, dst) {
  const scale = src / dst;
  const taps = [];
  for (let o = 0; o < dst; ++o) {
    const idx = [], w = [];
    if (scale >= 1) {
      const lo = o * scale, hi = lo + scale;
      for (let i = Math.floor(lo); i < Math.min(src, Math.ceil(hi)); ++i) {
        const cover = Math.min(hi, i + 1) - Math.max(lo, i);
        if (cover > 0) { idx.push(i); w.push(cover / scale); }
      }
    } else {
      const x = Math.max(0, Math.min(src - 1, (o + 0.5) * scale - 0.5));
      const i0 = Math.floor(x), i1 = Math.min(src - 1, i0 + 1), f = x - i0;
      idx.push(i0, i1); w.push(1 - f, f);
    }
    taps.push({ idx, w });
  }
  return taps;
}

// Decoded RGBA -> padded white square -> size x size, BGR (or RGB) float32 NHWC 0..255.
function preprocess(img, size, bgr) {
  const side = Math.max(img.width, img.height);
  const ox = Math.floor((side - img.width) / 2), oy = Math.floor((side - img.height) / 2);
  // The square, RGB float, transparency composited over white.
  const sq = new Float32Array(side * side * 3).fill(255);
  for (let y = 0; y < img.height; ++y) {
    for (let x = 0; x < img.width; ++x) {
      const s = (y * img.width + x) * 4, d = ((y + oy) * side + x + ox) * 3;
      const a = img.rgba[s + 3] / 255;
      sq[d] = img.rgba[s] * a + 255 * (1 - a);
      sq[d + 1] = img.rgba[s + 1] * a + 255 * (1 - a);
      sq[d + 2] = img.rgba[s + 2] * a + 255 * (1 - a);
    }
  }
  const taps = axisWeights(side, size);
  // Horizontal pass, then vertical, writing BGR.
  const tmp = new Float32Array(side * size * 3);
  for (let y = 0; y < side; ++y) {
    for (let x = 0; x < size; ++x) {
      const { idx, w } = taps[x];
      let r = 0, g = 0, b = 0;
      for (let k = 0; k < idx.length; ++k) {
        const s = (y * side + idx[k]) * 3;
        r += sq[s] * w[k]; g += sq[s + 1] * w[k]; b += sq[s + 2] * w[k];
      }
      const d = (y * size + x) * 3;
      tmp[d] = r; tmp[d + 1] = g; tmp[d + 2] = b;
    }
  }
  const out = new Float32Array(size * size * 3);
  for (let y = 0; y < size; ++y) {
    const { idx, w } = taps[y];
    for (let x = 0; x < size; ++x) {
      let r = 0, g = 0, b = 0;
      for (let k = 0; k < idx.length; ++k) {
        const s = (idx[k] * size + x) * 3;
        r += tmp[s] * w[k]; g += tmp[s + 1] * w[k]; b += tmp[s + 2] * w[k];
      }
      const d = (y * size + x) * 3;
      if (bgr) { out[d] = b; out[d + 1] = g; out[d + 2] = r; } else { out[d] = r; out[d + 1] = g; out[d + 2] = b; }
    }
  }
  return out;
}

function caption(probs, labels, general, character) {
  let rating = -1;
  const tags = [];
  for (let i = 0; i < labels.length; ++i) {
    const c = labels[i].category;
    if (c === 9) {
      if (rating < 0 || probs[i] > probs[rating]) rating = i;
    } else if (probs[i] >= (c === 4 ? character : general)) {
      tags.push(i);
    }
  }
  tags.sort((x, y) => probs[y] - probs[x]);
  return tags.map((i) => labels[i].name).join(', ');
}

async function main() {
  const a = args();
  const size = Number(a.size);
  const session = await ort.InferenceSession.create(a.onnx, {
    executionProviders: ['cpu'], graphOptimizationLevel: 'all',
    intraOpNumThreads: Number(a.threads), interOpNumThreads: 1, executionMode: 'sequential',
  });
  const labels = readLabels(a.labels);
  let files = listImages(a.dir);
  if (Number(a['max-files']) > 0) files = files.slice(0, Number(a['max-files']));
  if (a.out) fs.mkdirSync(a.out, { recursive: true });
  const input = session.inputNames[0], output = session.outputNames[0];
  let prepMs = 0, runMs = 0, writeMs = 0, failed = 0, done = 0;
  const start = performance.now();
  for (const f of files) {
    const t0 = performance.now();
    let data;
    try {
      data = preprocess(decode(fs.readFileSync(f)), size, a.channels !== 'RGB');
    } catch (e) {
      ++failed;
      continue;
    }
    const t1 = performance.now();
    const res = await session.run({ [input]: new ort.Tensor('float32', data, [1, size, size, 3]) });
    const t2 = performance.now();
    const probs = res[output].data;
    if (probs.length !== labels.length) throw new Error(`model gives ${probs.length} scores for ${labels.length} labels`);
    const text = caption(probs, labels, Number(a.general), Number(a.character));
    if (a.out) {
      const stem = path.relative(a.dir, f).replace(/\.[^./]+$/, '');
      const target = path.join(a.out, stem + '.txt');
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, text + '\n');
    }
    prepMs += t1 - t0; runMs += t2 - t1; writeMs += performance.now() - t2;
    ++done;
  }
  const seconds = (performance.now() - start) / 1e3;
  console.log(JSON.stringify({
    peer: 'onnxruntime-node ' + require('onnxruntime-node/package.json').version,
    images: done, failed, seconds, images_per_s: done / seconds,
    decode_preprocess_ms: done ? prepMs / done : 0, run_ms: done ? runMs / done : 0,
    caption_ms: done ? writeMs / done : 0, run_images_per_s: runMs > 0 ? done / (runMs / 1e3) : 0,
  }));
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
