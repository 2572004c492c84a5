// Runs Keras models with TensorFlow.js (cpu backend) for tests/parity/test_keras_parity.py's
// real-file group: each job is a TF.js layers-model written by tools/keras_h5_to_tfjs.py from a
// committed .h5 file, an input tensor (raw float32) and the layers to report.
// Usage: node keras_real_reference.js JOBS.json
// JOBS.json: {"jobs": [{"model_dir": D, "input": "x.f32", "shape": [N,H,W,C],
//                       "outputs": [{"name": layer, "file": "y.f32"}, ...]}]}
// Writes each output as raw float32 and prints [{"name", "shape"}] per job as JSON.
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

async function load(dir) {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json')));
  const buffers = [];
  for (const group of json.weightsManifest) for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  const data = Buffer.concat(buffers);
  const weightData = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  const weightSpecs = json.weightsManifest.flatMap((g) => g.weights);
  // strict: every weight in the file must find its variable and every variable its weight.
  return tf.loadLayersModel(tf.io.fromMemory({modelTopology: json.modelTopology, weightSpecs, weightData}), {strict: true});
}

async function main() {
  await tf.setBackend('cpu');
  const {jobs} = JSON.parse(fs.readFileSync(process.argv[2]));
  const report = [];
  for (const job of jobs) {
    const model = await load(job.model_dir);
    // A nested model used as a layer has an inbound node of its own besides its call in the outer
    // model; the outer model's graph uses the last one.
    const tensorOf = (name) => {
      const layer = model.getLayer(name);
      return layer.inboundNodes.length > 1 ? layer.getOutputAt(layer.inboundNodes.length - 1) : layer.output;
    };
    const probe = tf.model({inputs: model.inputs, outputs: job.outputs.map((o) => tensorOf(o.name))});
    const bytes = fs.readFileSync(job.input);
    const x = tf.tensor(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4), job.shape, 'float32');
    let ys = probe.predict(x);
    if (!Array.isArray(ys)) ys = [ys];
    const shapes = [];
    job.outputs.forEach((o, i) => {
      const v = ys[i].dataSync();
      fs.writeFileSync(o.file, Buffer.from(v.buffer, v.byteOffset, v.byteLength));
      shapes.push({name: o.name, shape: ys[i].shape});
    });
    report.push(shapes);
  }
  process.stdout.write(JSON.stringify(report));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
