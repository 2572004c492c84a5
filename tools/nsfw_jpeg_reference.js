// nsfwjs as its users run it in node, decoding included: jpeg-js decodes each JPEG, then nsfwjs'
// own preprocessing (÷255, bilinear resize with align_corners to the model size) and the tfjs
// layers-model from a pack directory. Prints {"file": [5 probabilities], ...} as JSON.
// Usage: node nsfw_jpeg_reference.js PACK_DIR SIZE IMAGE.jpg...
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const jpeg = require('jpeg-js');

async function loadPack(dir) {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json')));
  const buffers = [];
  for (const group of json.weightsManifest) for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  const data = Buffer.concat(buffers);
  const weightData = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  const weightSpecs = json.weightsManifest.flatMap((g) => g.weights);
  return tf.loadLayersModel(tf.io.fromMemory({modelTopology: json.modelTopology, weightSpecs, weightData}));
}

async function main() {
  const [dir, sizeText, ...files] = process.argv.slice(2);
  const size = Number(sizeText);
  const model = await loadPack(dir);
  const out = {};
  for (const file of files) {
    // "NAME.WxH.rgb" files hold pixels decoded elsewhere (raw RGB), to separate decoding from the rest.
    const raw = /\.(\d+)x(\d+)\.rgb$/.exec(file);
    const img = raw ? {width: Number(raw[1]), height: Number(raw[2]), data: fs.readFileSync(file), channels: 3}
                    : {...jpeg.decode(fs.readFileSync(file), {useTArray: true, formatAsRGBA: true}), channels: 4};
    const probs = tf.tidy(() => {
      const pixels = tf.tensor3d(new Int32Array(img.data), [img.height, img.width, img.channels], 'int32');
      const rgb = pixels.slice([0, 0, 0], [img.height, img.width, 3]).toFloat().div(255);
      const resized = tf.image.resizeBilinear(rgb, [size, size], true).expandDims(0);
      return model.predict(resized).dataSync();
    });
    out[path.basename(file)] = Array.from(probs);
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
