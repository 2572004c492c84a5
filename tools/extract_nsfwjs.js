#!/usr/bin/env node
// Unwraps the TF.js layers-models that the npm package nsfwjs ships as base64 strings inside UMD
// .min.js wrappers (dist/models/<model>/model.min.js and group1-shardNofM.min.js) into the
// standard layout, and writes acg2vec model packs:
//
//   node tools/extract_nsfwjs.js DEST
//     DEST/nsfw-mobilenet-v2/{model.json, group1-shard1of1, manifest.json}
//     DEST/nsfw-inception-v3/{model.json, group1-shard1of6 ... group1-shard6of6, manifest.json}
//
// Shards keep the names the weightsManifest gives them (no ".bin"). Files are only rewritten when
// their content changes, so running it again is a no-op.
'use strict';

const fs = require('fs');
const path = require('path');

const LABELS = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy'];
const PACKS = [
  {pack: 'nsfw-mobilenet-v2', model: 'mobilenet_v2', size: 224, embedding: 'flatten_1'},
  {pack: 'nsfw-inception-v3', model: 'inception_v3', size: 299, embedding: 'flatten_1'},
];

// The package's "exports" map hides package.json, so locate it through node_modules directly.
function packageDir() {
  for (const base of module.paths) {
    const dir = path.join(base, 'nsfwjs');
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  throw new Error('npm package nsfwjs is not installed (cd tools && npm install)');
}

function writeIfChanged(file, data) {
  if (fs.existsSync(file) && fs.readFileSync(file).equals(data)) return false;
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
  return true;
}

function requireLayer(modelJson, name) {
  const layers = modelJson.modelTopology.model_config.config.layers;
  if (!layers.some((l) => l.name === name)) throw new Error(`nsfwjs model has no layer ${name}`);
}

function extract(dest) {
  const root = path.join(packageDir(), 'dist', 'models');
  const version = JSON.parse(fs.readFileSync(path.join(packageDir(), 'package.json'))).version;
  let changed = 0;
  for (const spec of PACKS) {
    const src = path.join(root, spec.model);
    const modelJson = require(path.join(src, 'model.min.js'));
    if (!modelJson.modelTopology || !modelJson.weightsManifest) throw new Error(`${src}: not a layers-model`);
    requireLayer(modelJson, spec.embedding);
    const out = path.join(dest, spec.pack);
    fs.mkdirSync(out, {recursive: true});
    for (const group of modelJson.weightsManifest) {
      for (const shard of group.paths) {
        const b64 = require(path.join(src, `${shard}.min.js`));
        if (typeof b64 !== 'string') throw new Error(`${src}/${shard}.min.js: no base64 payload`);
        changed += writeIfChanged(path.join(out, shard), Buffer.from(b64, 'base64'));
      }
    }
    changed += writeIfChanged(path.join(out, 'model.json'), Buffer.from(JSON.stringify(modelJson)));
    const manifest = {
      name: spec.pack,
      task: 'classifier',
      format: 'tfjs_layers',
      file: 'model.json',
      input: {
        size: [spec.size, spec.size],
        resize: 'stretch_bilinear_align_corners',
        layout: 'NHWC',
        scale: 255,
        channels: 'RGB',
        alpha: 'composite_white',
      },
      labels: LABELS,
      embedding: {layer: spec.embedding, pool: 'none'},
      source: `npm nsfwjs@${version} dist/models/${spec.model} (MIT, infinitered/nsfwjs)`,
    };
    changed += writeIfChanged(path.join(out, 'manifest.json'), Buffer.from(JSON.stringify(manifest, null, 2) + '\n'));
  }
  console.log(`extract_nsfwjs: ${PACKS.length} packs in ${dest} (${changed ? `${changed} files written` : 'up to date'})`);
}

if (process.argv.length !== 3) {
  console.error('usage: extract_nsfwjs.js DEST');
  process.exit(2);
}
try {
  extract(path.resolve(process.argv[2]));
} catch (e) {
  console.error(`extract_nsfwjs: ${e.message}`);
  process.exit(1);
}
