#!/usr/bin/env node
// Reference fixtures for the Keras/TF.js loaders, computed with TensorFlow.js (an implementation
// of Keras layer semantics independent of acg2vec).
//
//   node tools/keras_reference.js models OUTDIR [--full]
//       Builds DeepDanbooru's resnet_custom_v3, Keras ResNet101V2 + the three pix2score heads and a
//       small "zoo" of the other supported layers, with seeded random weights (reduced depth and
//       width unless --full). Saves each as a TF.js layers-model (float32; the resnet also as
//       uint8-quantised shards without ".bin" and as float16), a deterministic input batch, and the
//       outputs tfjs computes for the model outputs and for named intermediate layers (e.g. add_N).
//   node tools/keras_reference.js packs OUTDIR
//       Full-depth, full-size, narrow random-weight DeepDanbooru v3 and pix2score layers-models
//       (see makePacks) for the shipped-manifest test.
//   node tools/keras_reference.js nsfw MODEL_DIR RGB_LIST OUT_PREFIX [cpu|wasm] [PROBE_LAYER...]
//       Runs a real nsfwjs layers-model on decoded RGB images (RGB_LIST: JSON [{file,width,height}]
//       of raw 8-bit RGB files) with nsfwjs' own preprocessing: resizeBilinear to the model size
//       with alignCorners=true, then /255. Writes OUT_PREFIX.input.f32 (the exact float input fed
//       to the model), OUT_PREFIX.<layer>.f32 for the output and each probe, and OUT_PREFIX.json.
//
// Tensors are written as raw little-endian float32; cases.json describes them.
'use strict';

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

async function useBackend(name) {
  if (name === 'wasm') require('@tensorflow/tfjs-backend-wasm');
  await tf.setBackend(name);
  await tf.ready();
}

// Seeded PRNG (mulberry32) so fixtures are reproducible across runs and machines.
function rng(seed) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => {
    const u = Math.max(uniform(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
  };
  return {uniform, normal};
}

function randomWeights(model, seed) {
  const r = rng(seed);
  for (const layer of model.layers) {
    const ws = layer.getWeights();
    if (!ws.length) continue;
    const names = layer.weights.map((w) => w.originalName.split('/').pop());
    const fresh = ws.map((w, i) => {
      const n = w.size;
      const v = new Float32Array(n);
      const name = names[i];
      const shape = w.shape;
      if (name === 'kernel' || name === 'depthwise_kernel') {
        const fanIn = name === 'depthwise_kernel' ? shape[0] * shape[1] : shape.slice(0, -1).reduce((a, b) => a * b, 1);
        const sd = Math.sqrt(1.5 / fanIn);
        for (let j = 0; j < n; ++j) v[j] = r.normal() * sd;
      } else if (name === 'gamma') {
        for (let j = 0; j < n; ++j) v[j] = 0.4 + 0.5 * r.uniform();
      } else if (name === 'moving_variance') {
        for (let j = 0; j < n; ++j) v[j] = 0.5 + r.uniform();
      } else {  // bias, beta, moving_mean
        for (let j = 0; j < n; ++j) v[j] = (r.uniform() - 0.5) * 0.4;
      }
      return tf.tensor(v, shape);
    });
    layer.setWeights(fresh);
  }
}

// ---- architectures ------------------------------------------------------------------------

// Keras-style automatic names (conv2d, conv2d_1, ...), so cuts like add_43 mean what they mean in
// a Keras-built DeepDanbooru model.
function namer() {
  const counts = {};
  return (base) => {
    const k = counts[base] || 0;
    counts[base] = k + 1;
    return k === 0 ? base : `${base}_${k}`;
  };
}

// DeepDanbooru resnet_custom_v3 as its model code builds it: conv_bn_relu 7x7/2 (64 filters) +
// max-pool 3x3/2 'same'; per stage one projection block (3x3 stride 1 in the first stage, 2 later;
// 1x1 conv + BN shortcut) and N identity blocks, each conv 1x1 -> 3x3 -> 1x1 (f/4, f/4, f), convs
// without bias ('he_normal' in the original), BN after each conv, Add, ReLU; then conv_gap: a 1x1
// conv to the classes and global average pooling, then a sigmoid.
function resnetCustomV3({height, width, stem, filters, repeats, classes}) {
  const name = namer();
  const L = tf.layers;
  const input = tf.input({shape: [height, width, 3], name: 'input_1'});
  const conv = (x, f, k, s) =>
    L.conv2d({filters: f, kernelSize: k, strides: s, padding: 'same', useBias: false, name: name('conv2d')}).apply(x);
  const bn = (x) => L.batchNormalization({name: name('batch_normalization')}).apply(x);
  const relu = (x) => L.activation({activation: 'relu', name: name('activation')}).apply(x);
  let x = relu(bn(conv(input, stem, 7, 2)));
  x = L.maxPooling2d({poolSize: 3, strides: 2, padding: 'same', name: name('max_pooling2d')}).apply(x);
  const block = (x, f, stride, projection) => {
    let c = relu(bn(conv(x, f / 4, 1, 1)));
    c = relu(bn(conv(c, f / 4, 3, stride)));
    c = bn(conv(c, f, 1, 1));
    const s = projection ? bn(conv(x, f, 1, stride)) : x;
    return relu(L.add({name: name('add')}).apply([c, s]));
  };
  filters.forEach((f, i) => {
    x = block(x, f, i === 0 ? 1 : 2, true);
    for (let r = 0; r < repeats[i]; ++r) x = block(x, f, 1, false);
  });
  x = conv(x, classes, 1, 1);
  x = L.globalAveragePooling2d({name: name('global_average_pooling2d')}).apply(x);
  x = L.activation({activation: 'sigmoid', name: name('activation')}).apply(x);
  return tf.model({inputs: input, outputs: x, name: 'resnet_custom_v3'});
}

// Keras applications ResNet101V2 (pre-activation, explicit ZeroPadding2D + valid convs,
// MaxPooling2D(1, stride) shortcuts), pooling='avg', plus pix2score's three softmax heads.
function resnetV2Pix2score({height, width, filters, blocks}) {
  const L = tf.layers;
  const eps = 1.001e-5;
  const input = tf.input({shape: [height, width, 3], name: 'input_1'});
  const block2 = (x, f, stride, convShortcut, n) => {
    let pre = L.batchNormalization({epsilon: eps, name: `${n}_preact_bn`}).apply(x);
    pre = L.activation({activation: 'relu', name: `${n}_preact_relu`}).apply(pre);
    let shortcut;
    if (convShortcut) {
      shortcut = L.conv2d({filters: 4 * f, kernelSize: 1, strides: stride, name: `${n}_0_conv`}).apply(pre);
    } else {
      shortcut = stride > 1 ? L.maxPooling2d({poolSize: 1, strides: stride, name: `${n}_0_pool`}).apply(x) : x;
    }
    let y = L.conv2d({filters: f, kernelSize: 1, strides: 1, useBias: false, name: `${n}_1_conv`}).apply(pre);
    y = L.batchNormalization({epsilon: eps, name: `${n}_1_bn`}).apply(y);
    y = L.activation({activation: 'relu', name: `${n}_1_relu`}).apply(y);
    y = L.zeroPadding2d({padding: [[1, 1], [1, 1]], name: `${n}_2_pad`}).apply(y);
    y = L.conv2d({filters: f, kernelSize: 3, strides: stride, useBias: false, name: `${n}_2_conv`}).apply(y);
    y = L.batchNormalization({epsilon: eps, name: `${n}_2_bn`}).apply(y);
    y = L.activation({activation: 'relu', name: `${n}_2_relu`}).apply(y);
    y = L.conv2d({filters: 4 * f, kernelSize: 1, name: `${n}_3_conv`}).apply(y);
    return L.add({name: `${n}_out`}).apply([shortcut, y]);
  };
  const stack2 = (x, f, count, stride1, n) => {
    x = block2(x, f, 1, true, `${n}_block1`);
    for (let i = 2; i < count; ++i) x = block2(x, f, 1, false, `${n}_block${i}`);
    return block2(x, f, stride1, false, `${n}_block${count}`);
  };
  let x = L.zeroPadding2d({padding: [[3, 3], [3, 3]], name: 'conv1_pad'}).apply(input);
  x = L.conv2d({filters: filters[0], kernelSize: 7, strides: 2, name: 'conv1_conv'}).apply(x);
  x = L.zeroPadding2d({padding: [[1, 1], [1, 1]], name: 'pool1_pad'}).apply(x);
  x = L.maxPooling2d({poolSize: 3, strides: 2, name: 'pool1_pool'}).apply(x);
  filters.forEach((f, i) => {
    x = stack2(x, f, blocks[i], i === filters.length - 1 ? 1 : 2, `conv${i + 2}`);
  });
  x = L.batchNormalization({epsilon: eps, name: 'post_bn'}).apply(x);
  x = L.activation({activation: 'relu', name: 'post_relu'}).apply(x);
  x = L.globalAveragePooling2d({name: 'avg_pool'}).apply(x);
  const heads = [['bookmark_predict', 15], ['view_predict', 15], ['sanity_predict', 5]].map(([n, k]) =>
    L.dense({units: k, activation: 'softmax', name: n}).apply(x));
  return tf.model({inputs: input, outputs: heads, name: 'pix2score'});
}

// The remaining layer kinds and options, each once: depthwise conv, dilation, ReLU options,
// relu6/swish/tanh, concatenate, multiply, average pooling with 'same', flatten of NHWC data,
// reshape, rescaling, dropout, dense with and without activation, softmax over the last axis.
function zoo() {
  const L = tf.layers;
  const input = tf.input({shape: [15, 13, 4], name: 'image'});
  let x = L.rescaling({scale: 1 / 0.7, offset: -0.25, name: 'rescale'}).apply(input);
  const a = L.conv2d({filters: 6, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu6', name: 'conv_a'}).apply(x);
  const b = L.depthwiseConv2d({kernelSize: 3, strides: 2, padding: 'same', depthMultiplier: 2, name: 'dw_b'}).apply(x);
  const bb = L.reLU({maxValue: 0.8, name: 'relu_capped'}).apply(b);
  x = L.concatenate({axis: -1, name: 'concat'}).apply([a, bb]);
  x = L.batchNormalization({center: false, name: 'bn_noscale_center', scale: false}).apply(x);
  const d = L.conv2d({filters: 14, kernelSize: 3, padding: 'same', dilationRate: 2, activation: 'swish', name: 'dilated'}).apply(x);
  x = L.multiply({name: 'gate'}).apply([x, L.activation({activation: 'sigmoid', name: 'gate_sigmoid'}).apply(d)]);
  x = L.averagePooling2d({poolSize: 3, strides: 1, padding: 'same', name: 'avg_same'}).apply(x);
  x = L.maxPooling2d({poolSize: 2, strides: 2, padding: 'same', name: 'max_same'}).apply(x);
  x = L.activation({activation: 'tanh', name: 'tanh'}).apply(x);
  x = L.depthwiseConv2d({kernelSize: 2, padding: 'valid', useBias: false, name: 'dw_valid'}).apply(x);
  const flat = L.flatten({name: 'flatten'}).apply(x);
  x = L.dropout({rate: 0.5, name: 'dropout'}).apply(flat);
  x = L.dense({units: 24, name: 'dense_linear'}).apply(x);
  const grid = L.reshape({targetShape: [2, 3, 4], name: 'reshape'}).apply(x);
  const g = L.conv2d({filters: 5, kernelSize: [2, 3], padding: 'valid', name: 'conv_on_reshape'}).apply(grid);
  const out1 = L.softmax({axis: -1, name: 'softmax'}).apply(L.flatten({name: 'flatten_2'}).apply(g));
  const out2 = L.dense({units: 3, activation: 'sigmoid', name: 'dense_sigmoid'}).apply(flat);
  return tf.model({inputs: input, outputs: [out1, out2], name: 'zoo'});
}

// Less common layers: separable conv, PReLU, nearest upsampling, cropping, layer normalisation,
// LeakyReLU, Average/Maximum/Minimum merges, Permute, global max pooling and more activations.
function zooExtra() {
  const L = tf.layers;
  const input = tf.input({shape: [12, 10, 3], name: 'image'});
  let x = L.separableConv2d({filters: 8, kernelSize: 3, strides: 2, padding: 'same', depthMultiplier: 2, activation: 'elu', name: 'sep'}).apply(input);
  x = L.prelu({sharedAxes: [1, 2], name: 'prelu'}).apply(x);
  x = L.upSampling2d({size: [2, 3], name: 'up'}).apply(x);
  x = L.cropping2D({cropping: [[1, 2], [0, 3]], name: 'crop'}).apply(x);
  const ln = L.layerNormalization({axis: -1, name: 'ln'}).apply(x);
  const leaky = L.leakyReLU({alpha: 0.2, name: 'leaky'}).apply(ln);
  const selu = L.conv2d({filters: 8, kernelSize: 1, activation: 'selu', name: 'c_selu'}).apply(x);
  const avg = L.average({name: 'avg'}).apply([selu, leaky, ln]);
  const max = L.maximum({name: 'max'}).apply([avg, ln]);
  const min = L.minimum({name: 'min'}).apply([max, leaky]);
  const sig = L.activation({activation: 'hardSigmoid', name: 'hard_sig'}).apply(min);
  const lnAll = L.layerNormalization({axis: [1, 2, 3], name: 'ln_all'}).apply(sig);
  const perm = L.permute({dims: [2, 1, 3], name: 'perm'}).apply(lnAll);
  const thr = L.thresholdedReLU({theta: 0.3, name: 'thresholded'}).apply(perm);
  const elu = L.elu({name: 'elu_layer'}).apply(thr);
  const gmp = L.globalMaxPooling2d({name: 'gmp'}).apply(L.add({name: 'mix'}).apply([perm, elu]));
  const out = L.dense({units: 4, activation: 'softplus', name: 'dense_softplus'}).apply(gmp);
  const out2 = L.activation({activation: 'softsign', name: 'softsign'}).apply(L.flatten({name: 'flat_perm'}).apply(perm));
  return tf.model({inputs: input, outputs: [out, out2], name: 'zoo_extra'});
}

// ---- saving -------------------------------------------------------------------------------

function writeF32(file, data) {
  fs.mkdirSync(path.dirname(file), {recursive: true});
  const f = data instanceof Float32Array ? data : Float32Array.from(data);
  fs.writeFileSync(file, Buffer.from(f.buffer, f.byteOffset, f.byteLength));
}

async function artifactsOf(model) {
  let artifacts;
  await model.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
  }));
  return artifacts;
}

// Writes a layers-model: float32 (one ".bin" shard), uint8-quantised (per-tensor min/scale,
// split into two shards named without ".bin") or float16.
function writeLayersModel(dir, artifacts, encoding) {
  fs.mkdirSync(dir, {recursive: true});
  const src = new Float32Array(artifacts.weightData);
  const specs = [];
  const chunks = [];
  let offset = 0;
  for (const spec of artifacts.weightSpecs) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const v = src.subarray(offset, offset + n);
    offset += n;
    if (encoding === 'float32') {
      specs.push(spec);
      chunks.push(Buffer.from(Float32Array.from(v).buffer));
    } else if (encoding === 'uint8') {
      let lo = Infinity;
      let hi = -Infinity;
      for (const e of v) lo = Math.min(lo, e), hi = Math.max(hi, e);
      const scale = hi > lo ? (hi - lo) / 255 : 1;
      const q = Uint8Array.from(v, (e) => Math.round((e - lo) / scale));
      specs.push({...spec, quantization: {dtype: 'uint8', min: lo, scale}});
      chunks.push(Buffer.from(q.buffer));
    } else {  // float16
      const h = new Uint16Array(n);
      for (let j = 0; j < n; ++j) h[j] = toHalf(v[j]);
      specs.push({...spec, quantization: {dtype: 'float16'}});
      chunks.push(Buffer.from(h.buffer));
    }
  }
  const all = Buffer.concat(chunks);
  let paths;
  if (encoding === 'uint8') {
    const cut = Math.floor(all.length / 2) + 3;  // shards split mid-tensor, as tfjs allows
    paths = ['group1-shard1of2', 'group1-shard2of2'];
    fs.writeFileSync(path.join(dir, paths[0]), all.subarray(0, cut));
    fs.writeFileSync(path.join(dir, paths[1]), all.subarray(cut));
  } else {
    paths = ['group1-shard1of1.bin'];
    fs.writeFileSync(path.join(dir, paths[0]), all);
  }
  const json = {
    format: 'layers-model',
    generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
    convertedBy: null,
    modelTopology: artifacts.modelTopology,
    weightsManifest: [{paths, weights: specs}],
  };
  fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));
}

function toHalf(value) {
  const f = new Float32Array([value]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  let exp = ((x >>> 23) & 0xff) - 127 + 15;
  let mant = x & 0x7fffff;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant = (mant | 0x800000) >> (1 - exp);
    return sign | ((mant + 0x1000) >> 13);
  }
  if (exp >= 31) return sign | 0x7c00;
  const h = sign | (exp << 10) | (mant >> 13);
  return (mant & 0x1000) ? h + 1 : h;  // round half up on the dropped bits
}

// Loads a model.json written above through tfjs' own IO (which decodes quantised weights itself).
async function loadLayersModel(dir) {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json')));
  const buffers = [];
  for (const group of json.weightsManifest) for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  const data = Buffer.concat(buffers);
  const weightData = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  const weightSpecs = json.weightsManifest.flatMap((g) => g.weights);
  return tf.loadLayersModel(tf.io.fromMemory({modelTopology: json.modelTopology, weightSpecs, weightData}));
}

// Outputs of the named layers; "<layer>/gap" is that layer's output averaged over height and width.
async function expectedOutputs(model, input, names, dir, tag) {
  const layers = [...new Set(names.map((n) => n.replace(/\/gap$/, '')))];
  const probe = tf.model({inputs: model.inputs, outputs: layers.map((n) => model.getLayer(n).output)});
  let raw = probe.predict(input);
  if (!Array.isArray(raw)) raw = [raw];
  const ys = names.map((n) => {
    const y = raw[layers.indexOf(n.replace(/\/gap$/, ''))];
    return n.endsWith('/gap') ? tf.mean(y, [1, 2]) : y.clone();
  });
  tf.dispose(raw);
  const result = [];
  for (let i = 0; i < names.length; ++i) {
    const file = `${tag}.${names[i].replace('/', '.')}.f32`;
    writeF32(path.join(dir, file), await ys[i].data());
    result.push({name: names[i], file, shape: ys[i].shape});
  }
  tf.dispose(ys);
  return result;
}

async function makeModels(outDir, full) {
  await useBackend(full ? 'wasm' : 'cpu');
  fs.mkdirSync(outDir, {recursive: true});
  const cases = [];
  const specs = [
    {
      name: 'resnet_custom_v3',
      build: () => resnetCustomV3(full
        ? {height: 512, width: 512, stem: 64, filters: [256, 512, 1024, 1024, 2048, 4096], repeats: [2, 7, 19, 19, 2, 2], classes: 9176}
        : {height: 96, width: 80, stem: 16, filters: [32, 48, 64, 64, 96, 128], repeats: [1, 1, 2, 2, 1, 1], classes: 37}),
      batch: full ? 1 : 2,
      // add_8 in the reduced model is the second block of the fourth stage, like add_43 in the full one.
      probes: full ? ['add_43', 'activation_96', 'add'] : ['add_8', 'activation_24', 'add', 'max_pooling2d'],
      // The illust2vec embedding: the cut followed by global average pooling.
      gapProbes: full ? ['add_43'] : ['add_8'],
      encodings: full ? ['float32'] : ['float32', 'uint8', 'float16'],
    },
    {
      name: 'pix2score',
      build: () => resnetV2Pix2score(full
        ? {height: 224, width: 224, filters: [64, 128, 256, 512], blocks: [3, 4, 23, 3]}
        : {height: 72, width: 64, filters: [8, 16, 24, 32], blocks: [2, 2, 3, 2]}),
      batch: full ? 1 : 2,
      probes: ['conv4_block2_out', 'avg_pool', 'pool1_pool'],
      encodings: ['float32'],
    },
    {name: 'zoo', build: zoo, batch: 3, probes: ['concat', 'gate', 'flatten', 'reshape'], encodings: ['float32']},
    {
      name: 'zoo_extra',
      build: zooExtra,
      batch: 2,
      probes: ['sep', 'prelu', 'up', 'crop', 'ln', 'avg', 'max', 'min', 'hard_sig', 'ln_all', 'perm', 'thresholded', 'elu_layer'],
      encodings: ['float32'],
    },
  ];
  let seed = 1234;
  for (const spec of specs) {
    const model = spec.build();
    randomWeights(model, seed++);
    const r = rng(seed++);
    const shape = [spec.batch, ...model.inputs[0].shape.slice(1)];
    const n = shape.reduce((a, b) => a * b, 1);
    const inputData = Float32Array.from({length: n}, () => r.uniform());
    const inputFile = `${spec.name}/input.f32`;
    writeF32(path.join(outDir, inputFile), inputData);
    const input = tf.tensor(inputData, shape);
    const artifacts = await artifactsOf(model);
    const outputNames = model.outputLayers.map((l) => l.name);
    for (const enc of spec.encodings) {
      const dir = path.join(outDir, spec.name, enc);
      writeLayersModel(dir, artifacts, enc);
      // Quantised variants get their own expectations: tfjs' loader dequantises them.
      const ref = enc === 'float32' ? model : await loadLayersModel(dir);
      const outputs = (await expectedOutputs(ref, input, [...outputNames, ...spec.probes, ...(spec.gapProbes || []).map((n) => `${n}/gap`)], path.join(outDir, spec.name), enc))
          .map((o) => ({...o, file: `${spec.name}/${o.file}`}));
      const base = {group: spec.name, input: {file: inputFile, shape}, outputs};
      cases.push({...base, name: `${spec.name}/tfjs_${enc}`, format: 'tfjs_layers', model: `${spec.name}/${enc}/model.json`});
      if (enc === 'float32') {
        cases.push({...base, name: `${spec.name}/keras_h5`, format: 'keras_h5', model: `${spec.name}/model.h5`,
                    h5_from: `${spec.name}/${enc}/model.json`});
      }
    }
    input.dispose();
  }
  fs.writeFileSync(path.join(outDir, 'cases.json'), JSON.stringify({cases}, null, 1));
  console.log(`keras_reference: wrote ${cases.length} cases to ${outDir}`);
}

async function runNsfw(modelDir, listFile, outPrefix, backend, probes) {
  await useBackend(backend);
  const model = await loadLayersModel(modelDir);
  const [, h, w] = model.inputs[0].shape;
  const names = [...model.outputLayers.map((l) => l.name), ...probes];
  const probe = tf.model({inputs: model.inputs, outputs: names.map((n) => model.getLayer(n).output)});
  const list = JSON.parse(fs.readFileSync(listFile));
  const inputs = [];
  const outputs = names.map(() => []);
  let shapes = [];
  const started = Date.now();
  for (const item of list) {
    const rgb = fs.readFileSync(item.file);
    const x = tf.tidy(() => {
      const img = tf.tensor3d(new Uint8Array(rgb), [item.height, item.width, 3], 'int32').toFloat();
      // nsfwjs' classify(): resizeBilinear(alignCorners=true) to the model size, then /255.
      return tf.image.resizeBilinear(img, [h, w], true).div(255).expandDims(0);
    });
    inputs.push(await x.data());
    let ys = probe.predict(x);
    if (!Array.isArray(ys)) ys = [ys];
    for (let i = 0; i < ys.length; ++i) outputs[i].push(await ys[i].data());
    shapes = ys.map((y) => [list.length, ...y.shape.slice(1)]);
    tf.dispose([x, ...ys]);
  }
  const cat = (arrs) => {
    const out = new Float32Array(arrs.reduce((a, b) => a + b.length, 0));
    let o = 0;
    for (const a of arrs) out.set(a, o), o += a.length;
    return out;
  };
  const base = path.basename(outPrefix);
  writeF32(`${outPrefix}.input.f32`, cat(inputs));
  const meta = {
    input: {file: `${base}.input.f32`, shape: [list.length, h, w, 3]},
    outputs: names.map((n, i) => {
      writeF32(`${outPrefix}.${n}.f32`, cat(outputs[i]));
      return {name: n, file: `${base}.${n}.f32`, shape: shapes[i]};
    }),
    backend: tf.getBackend(),
    seconds: (Date.now() - started) / 1000,
  };
  fs.writeFileSync(`${outPrefix}.json`, JSON.stringify(meta));
  console.log(`keras_reference: ${list.length} images through ${modelDir} in ${meta.seconds}s (${meta.backend})`);
}

// Random-weight stand-ins for the real DeepDanbooru v3 and pix2score files: full depth (so layer
// names such as add_43, the illust2vec cut, are the real ones) and full input size and class
// count, narrow width so they load and run quickly. Written as float32 layers-models; the caller
// turns them into .h5 with tools/tfjs_to_keras_h5.py.
async function makePacks(outDir) {
  await useBackend('cpu');
  const specs = [
    {name: 'deepdanbooru-v3', build: () => resnetCustomV3({height: 512, width: 512, stem: 8,
      filters: [8, 8, 16, 16, 16, 32], repeats: [2, 7, 19, 19, 2, 2], classes: 9176})},
    {name: 'pix2score', build: () => resnetV2Pix2score({height: 224, width: 224, filters: [4, 4, 8, 8],
      blocks: [3, 4, 23, 3]})},
  ];
  let seed = 99;
  for (const spec of specs) {
    const model = spec.build();
    randomWeights(model, seed++);
    writeLayersModel(path.join(outDir, spec.name), await artifactsOf(model), 'float32');
    tf.dispose(model.weights.map((w) => w.val));
  }
  console.log(`keras_reference: wrote ${specs.map((s) => s.name).join(', ')} to ${outDir}`);
}

async function main() {
  const [cmd, ...args] = process.argv.slice(2);
  if (cmd === 'packs') return makePacks(args[0]);
  if (cmd === 'models') return makeModels(args[0], args.includes('--full'));
  if (cmd === 'nsfw') return runNsfw(args[0], args[1], args[2], args[3] || 'wasm', args.slice(4));
  console.error('usage: keras_reference.js models OUTDIR [--full] | nsfw MODEL_DIR RGB_LIST OUT_PREFIX [cpu|wasm] [PROBE_LAYER...]');
  process.exit(2);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
