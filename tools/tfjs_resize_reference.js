// TensorFlow.js' bilinear resize (cpu backend, float32) as a reference for src/image's bilinear modes.
// Usage: node tfjs_resize_reference.js JOBS.json
// JOBS.json: {"jobs": [{"rgb": "x.rgb", "height": H, "width": W, "size": [OH, OW],
//                       "align_corners": bool, "half_pixel_centers": bool, "out": "y.f32"}, ...]}
// Each job reads H x W x 3 uint8 pixels, resizes them as float32 with tf.image.resizeBilinear and writes
// the OH x OW x 3 float32 result divided by 255 (the order nsfwjs and our "scale": 255 use).
const fs = require('fs');
const tf = require('@tensorflow/tfjs');

async function main() {
  await tf.setBackend('cpu');
  const {jobs} = JSON.parse(fs.readFileSync(process.argv[2]));
  for (const job of jobs) {
    const bytes = fs.readFileSync(job.rgb);
    if (bytes.length !== job.height * job.width * 3) throw new Error(`${job.rgb}: ${bytes.length} bytes`);
    const out = tf.tidy(() => {
      const x = tf.tensor3d(Float32Array.from(bytes), [job.height, job.width, 3], 'float32');
      return tf.image.resizeBilinear(x, job.size, job.align_corners, job.half_pixel_centers).div(255).dataSync();
    });
    fs.writeFileSync(job.out, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
  }
  process.stdout.write(`tfjs ${tf.version.tfjs} (${tf.getBackend()}): ${jobs.length} resizes\n`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
