#!/usr/bin/env node
// Where ONNX Runtime's time goes: runs one ONNX file with onnxruntime-node (CPU provider, the
// same session options as bench/ort_peer.js) with profiling on, and prints the kernel time per op
// type and the slowest nodes (mean over the timed runs), to set beside `acg2vec bench model
// --profile`. The input is zeros plus a ramp (the values do not change the work done).
//   node bench/ort_profile.js --onnx F --shape 1,3,292,292 [--runs 3] [--threads 2] [--top 12]
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const ort = require('onnxruntime-node');

function args() {
  const a = { runs: 3, threads: 2, top: 12 };
  for (let i = 2; i < process.argv.length; i += 2) a[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
  for (const k of ['onnx', 'shape']) if (!a[k]) throw new Error(`missing --${k}`);
  return a;
}

async function main() {
  const a = args();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ort-profile-'));
  const options = {
    executionProviders: ['cpu'], graphOptimizationLevel: 'all',
    intraOpNumThreads: Number(a.threads), interOpNumThreads: 1, executionMode: 'sequential',
    enableProfiling: true, profileFilePrefix: path.join(dir, 'ort'),
  };
  const session = await ort.InferenceSession.create(a.onnx, options);
  const shape = a.shape.split(',').map(Number);
  const data = new Float32Array(shape.reduce((x, y) => x * y, 1));
  for (let i = 0; i < data.length; ++i) data[i] = (i % 251) / 251;
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, shape) };
  const runs = Number(a.runs);
  const wall = [];
  for (let i = 0; i <= runs; ++i) {
    const t = performance.now();
    await session.run(feeds);
    wall.push(performance.now() - t);
  }
  session.endProfiling();
  await session.release();
  const file = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => path.join(dir, f))[0];
  const events = JSON.parse(fs.readFileSync(file, 'utf8'));
  // Node events of the last `runs` model runs (the first is the untimed one).
  const runEvents = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
  const from = runEvents.length > runs ? runEvents[runEvents.length - runs].ts : 0;
  const byOp = new Map(), byNode = new Map();
  let total = 0;
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < from) continue;
    const op = (e.args && e.args.op_name) || '?';
    const node = e.name.replace(/_kernel_time$/, '');
    const o = byOp.get(op) || { us: 0, calls: 0 };
    o.us += e.dur; o.calls += 1; byOp.set(op, o);
    const n = byNode.get(node) || { us: 0, op, shape: JSON.stringify((e.args && e.args.output_type_shape) || '') };
    n.us += e.dur; byNode.set(node, n);
    total += e.dur;
  }
  const ms = (us) => (us / 1e3 / runs).toFixed(3);
  console.log(`profile (ONNX Runtime ${require('onnxruntime-node/package.json').version}, ${a.threads} threads, ` +
              `mean of ${runs} runs, ${ms(total)} ms per run in kernels, wall ${wall.slice(1).map((x) => x.toFixed(0)).join('/')} ms):`);
  console.log(`  ${'OP'.padEnd(24)} ${'CALLS'.padStart(8)} ${'MS/RUN'.padStart(10)} ${'SHARE'.padStart(7)}`);
  for (const [op, o] of [...byOp].sort((x, y) => y[1].us - x[1].us))
    console.log(`  ${op.padEnd(24)} ${String(o.calls / runs).padStart(8)} ${ms(o.us).padStart(10)} ${(100 * o.us / total).toFixed(1).padStart(6)}%`);
  console.log(`slowest ${a.top} nodes:`);
  for (const [node, n] of [...byNode].sort((x, y) => y[1].us - x[1].us).slice(0, Number(a.top)))
    console.log(`  ${node.padEnd(40)} ${n.op.padEnd(14)} ${ms(n.us).padStart(10)} ms  ${n.shape}`);
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
