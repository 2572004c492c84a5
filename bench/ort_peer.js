#!/usr/bin/env node
// ONNX Runtime peer for `acg2vec bench model`: runs one ONNX file with onnxruntime-node (CPU
// execution provider) on the input tensor the caller wrote, for a fixed time, and prints one JSON
// line with the throughput and latencies. The output of the first run is written to --output so
// the caller can check that every peer computed the same thing.
//   node bench/ort_peer.js --onnx F --input IN.bin --shape 8,3,224,224 --output OUT.bin
//        [--seconds 3] [--threads 2] [--warmup 2]
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

function args() {
  const a = { seconds: 3, threads: 2, warmup: 2 };
  for (let i = 2; i < process.argv.length; i += 2) a[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
  for (const k of ['onnx', 'input', 'shape', 'output']) if (!a[k]) throw new Error(`missing --${k}`);
  return a;
}

async function main() {
  const a = args();
  const threads = Number(a.threads);
  const session = await ort.InferenceSession.create(a.onnx, {
    executionProviders: ['cpu'], graphOptimizationLevel: 'all',
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
  });
  const shape = a.shape.split(',').map(Number);
  const bytes = fs.readFileSync(a.input);
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, shape) };
  const first = await session.run(feeds);
  const out = first[session.outputNames[0]];
  fs.writeFileSync(a.output, Buffer.from(out.data.buffer, out.data.byteOffset, out.data.byteLength));
  for (let i = 1; i < Number(a.warmup); ++i) await session.run(feeds);
  const lat = [];
  const budget = Number(a.seconds) * 1e3;
  const start = performance.now();
  while (performance.now() - start < budget || lat.length < 3) {
    const t = performance.now();
    await session.run(feeds);
    lat.push(performance.now() - t);
  }
  const total = (performance.now() - start) / 1e3;
  lat.sort((x, y) => x - y);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  console.log(JSON.stringify({
    peer: 'onnxruntime-node ' + require('onnxruntime-node/package.json').version,
    runs: lat.length, seconds: total, items_per_s: shape[0] * lat.length / total,
    p50_ms: q(0.5), p95_ms: q(0.95), output_shape: out.dims,
  }));
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
