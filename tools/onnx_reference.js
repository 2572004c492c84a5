#!/usr/bin/env node
// Runs every model of a manifest written by export_onnx_models.py through ONNX Runtime (npm
// onnxruntime-node, CPU) on the same input files and writes the outputs next to them as
// <model>.<case>.ort<i>.bin, listed in ort_manifest.json.
//   node tools/onnx_reference.js DIR
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

const typed = {
  float32: Float32Array, int64: BigInt64Array, int32: Int32Array, bool: Uint8Array, float64: Float64Array,
};

async function main() {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: onnx_reference.js DIR');
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  const result = { onnxruntime: require('onnxruntime-node/package.json').version, models: [] };
  for (const model of manifest.models) {
    const session = await ort.InferenceSession.create(path.join(dir, model.file), {
      executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: 2,
    });
    const entry = { name: model.name, cases: [] };
    for (const c of model.cases) {
      const feeds = {};
      for (const input of c.inputs) {
        const bytes = fs.readFileSync(path.join(dir, input.file));
        const Ctor = typed[input.dtype];
        if (!Ctor) throw new Error(`unsupported dtype ${input.dtype}`);
        const data = new Ctor(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
        feeds[input.name] = new ort.Tensor(input.dtype === 'bool' ? 'bool' : input.dtype, data, input.shape);
      }
      const outputs = await session.run(feeds);
      const written = [];
      c.outputs.forEach((o, i) => {
        const t = outputs[o.name];
        const file = `${model.name}.${c.name}.ort${i}.bin`;
        fs.writeFileSync(path.join(dir, file), Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
        written.push({ name: o.name, dtype: t.type, shape: t.dims, file });
      });
      entry.cases.push({ name: c.name, outputs: written });
    }
    result.models.push(entry);
    console.log(`onnxruntime ${result.onnxruntime}: ${model.name} done`);
  }
  fs.writeFileSync(path.join(dir, 'ort_manifest.json'), JSON.stringify(result, null, 1));
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
