#!/usr/bin/python3
"""Parity of acg2vec's Keras .h5 and TF.js layers-model loaders with TensorFlow.js.

1. Generates reference fixtures with the tools in tools/ (cached in $ACG2VEC_BUILD_DIR/fixtures/keras,
   keyed on the content of the tools, the npm lock file, this script and the test images, and made
   under a file lock; tests/integration/fixture_cache.py):
   - tools/keras_reference.js: DeepDanbooru resnet_custom_v3 and Keras ResNet101V2 + pix2score heads
     (reduced depth/width, seeded random weights) and a layer zoo, saved as TF.js layers-models
     (float32, uint8-quantised, float16), with tfjs' outputs and named intermediate layers;
   - tools/tfjs_to_keras_h5.py: the same architectures and weights as Keras .h5 files (h5py);
   - tools/extract_nsfwjs.js: the real nsfwjs@4.4.0 MobileNetV2 / InceptionV3 from npm, run by tfjs
     (wasm backend) on the 18 real images in tests/data/nsfw with nsfwjs' preprocessing. PNG alpha is
     composited on white (PIL) before the pixels reach tfjs.
2. Runs the C++ side: acg2vec_tests --gtest_also_run_disabled_tests --gtest_filter=KerasParity.* with ACG2VEC_KERAS_FIXTURES set. It
   loads each model with our loaders, runs it on the exact float input tfjs got, and requires
   max |ours - tfjs| <= 1e-4 on every final output and every named cut layer.
Missing node or npm packages is a failure, not a skip.

ACG2VEC_KERAS_FULL=1 uses the full-depth, full-width architectures instead (resnet_custom_v3 at 512x512
with 9176 classes and the add_43 cut, ResNet101V2 at 224x224), in fixtures/keras_full. It needs a few GB
of memory and several minutes; CI runs the reduced variants.
"""
import json
import os
import re
import shutil
import subprocess
import sys

from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
from fixture_cache import cached_dir  # noqa: E402

SOURCE = os.environ.get('ACG2VEC_SOURCE_DIR', os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))
BUILD = os.environ.get('ACG2VEC_BUILD_DIR', os.path.join(SOURCE, 'build', 'release'))
TEST_BIN = os.environ.get('ACG2VEC_TEST_BIN', os.path.join(BUILD, 'tests', 'acg2vec_tests'))
TOOLS = os.path.join(SOURCE, 'tools')
IMAGES = os.path.join(SOURCE, 'tests', 'data', 'nsfw')
REAL = os.path.join(SOURCE, 'tests', 'data', 'keras-real')
FULL = os.environ.get('ACG2VEC_KERAS_FULL') == '1'
OUT = os.path.join(BUILD, 'fixtures', 'keras_full' if FULL else 'keras')
PYTHON = '/usr/bin/python3'
EXPECTED_TESTS = 7


def die(msg):
    print(f'FAIL: {msg}', file=sys.stderr)
    sys.exit(1)


def run(cmd, **kw):
    print('+', ' '.join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=TOOLS, **kw)
    if r.returncode != 0:
        die(f'command failed ({r.returncode}): {" ".join(cmd)}')


def check_prerequisites():
    if shutil.which('node') is None:
        die('node is not installed; run scripts/setup.sh (Debian nodejs)')
    for pkg in ('@tensorflow/tfjs', '@tensorflow/tfjs-backend-wasm', 'nsfwjs'):
        if not os.path.isdir(os.path.join(TOOLS, 'node_modules', pkg)):
            die(f'npm package {pkg} is missing in tools/node_modules; run: cd tools && npm install')
    if not os.path.exists(TEST_BIN):
        die(f'test binary {TEST_BIN} not built')


def fixture_inputs():
    """What the fixtures are generated from: their key in the cache (tests/integration/fixture_cache.py)."""
    names = ['keras_reference.js', 'tfjs_to_keras_h5.py', 'extract_nsfwjs.js', 'package-lock.json',
             'keras_h5_to_tfjs.py', 'keras_real_reference.js']
    return [os.path.join(TOOLS, n) for n in names] + [os.path.abspath(__file__), IMAGES, REAL]


def read_source(path):
    """tests/data/keras-real/SOURCE: blocks of 'key: value' lines separated by blank lines."""
    blocks, block = [], {}
    for line in open(path, encoding='utf-8').read().splitlines() + ['']:
        if not line.strip():
            if block:
                blocks.append(block)
            block = {}
        elif not line.startswith('#'):
            key, _, value = line.partition(': ')
            block[key] = value
    return blocks


def real_keras_cases(tmp):
    """Cases for the committed .h5 files written by real Keras: each becomes a TF.js model with the same
    weights (tools/keras_h5_to_tfjs.py); tfjs runs it on a seeded input in [-1, 1] (batch 2) and reports
    the layers SOURCE lists under 'compare'."""
    import numpy as np
    rng = np.random.default_rng(20261206)
    jobs, cases = [], []
    for b in read_source(os.path.join(REAL, 'SOURCE')):
        if b.get('load') != 'runs':
            continue
        stem = os.path.splitext(b['file'])[0].replace('.', '_')
        d = os.path.join(tmp, 'keras_real', stem)
        os.makedirs(d)
        shutil.copy(os.path.join(REAL, b['file']), os.path.join(d, 'model.h5'))
        r = subprocess.run([PYTHON, os.path.join(TOOLS, 'keras_h5_to_tfjs.py'), os.path.join(d, 'model.h5'),
                            os.path.join(d, 'tfjs')], capture_output=True, text=True)
        if r.returncode != 0:
            die(f'keras_h5_to_tfjs.py {b["file"]}: {r.stderr}')
        info = json.loads(r.stdout)
        shape = [2] + info['input_shape'][1:]
        rng.uniform(-1, 1, shape).astype(np.float32).tofile(os.path.join(d, 'input.f32'))
        names = [n.strip() for n in b['compare'].split(',')]
        if info['output'] not in names:
            die(f'{b["file"]}: SOURCE compare must include the output layer {info["output"]}')
        jobs.append({'model_dir': os.path.join(d, 'tfjs'), 'input': os.path.join(d, 'input.f32'), 'shape': shape,
                     'outputs': [{'name': n, 'file': os.path.join(d, n + '.f32')} for n in names]})
        cases.append({'group': 'keras_real', 'name': f'keras_real/{b["file"]} (Keras {info["keras_version"]})',
                      'format': 'keras_h5', 'model': f'keras_real/{stem}/model.h5', 'reference_backend': 'cpu',
                      'input': {'file': f'keras_real/{stem}/input.f32', 'shape': shape},
                      'outputs': [{'name': n, 'file': f'keras_real/{stem}/{n}.f32'} for n in names]})
    if len(cases) < 5:
        die(f'expected at least 5 runnable real Keras files in {REAL}, found {len(cases)}')
    with open(os.path.join(tmp, 'keras_real', 'jobs.json'), 'w') as f:
        json.dump({'jobs': jobs}, f)
    r = subprocess.run(['node', 'keras_real_reference.js', os.path.join(tmp, 'keras_real', 'jobs.json')], cwd=TOOLS,
                       stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        die('keras_real_reference.js failed')
    for case, shapes in zip(cases, json.loads(r.stdout)):
        for o, got in zip(case['outputs'], shapes):
            o['shape'] = got['shape']
    return cases


def decode_images(dest):
    """Decoded 8-bit RGB of every test image, alpha composited on white."""
    os.makedirs(dest, exist_ok=True)
    items = []
    for name in sorted(os.listdir(IMAGES)):
        if not name.endswith('.png'):
            continue
        im = Image.open(os.path.join(IMAGES, name))
        im = im.convert('RGBA')
        white = Image.new('RGBA', im.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, im).convert('RGB')
        path = os.path.join(dest, name + '.rgb')
        with open(path, 'wb') as f:
            f.write(rgb.tobytes())
        items.append({'file': path, 'width': rgb.size[0], 'height': rgb.size[1]})
    return items


def check_pack(pack_dir, name, meta):
    """The pack scripts/install-packs.sh writes is self-consistent with what tfjs ran."""
    m = json.load(open(os.path.join(pack_dir, 'manifest.json')))
    if m['name'] != name or m['task'] != 'classifier' or m['format'] != 'tfjs_layers':
        die(f'{name}: unexpected manifest header {m}')
    if not os.path.exists(os.path.join(pack_dir, m['file'])):
        die(f'{name}: manifest file {m["file"]} missing')
    if m['labels'] != ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy'] or meta['outputs'][0]['shape'][1] != len(m['labels']):
        die(f'{name}: labels {m["labels"]} do not match the output {meta["outputs"][0]["shape"]}')
    if m['input']['size'] != meta['input']['shape'][1:3]:
        die(f'{name}: manifest input size {m["input"]["size"]} but the model takes {meta["input"]["shape"]}')
    if m['embedding']['layer'] not in [o['name'] for o in meta['outputs']]:
        die(f'{name}: embedding layer {m["embedding"]["layer"]} is not compared')


def generate(out):
    tmp = out + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    run(['node', '--max-old-space-size=12000', 'keras_reference.js', 'models', tmp, *(['--full'] if FULL else [])])
    cases = json.load(open(os.path.join(tmp, 'cases.json')))['cases']
    # Each .h5 variant stores its strings differently, as Keras versions do.
    h5_options = {'resnet_custom_v3': [], 'pix2score': ['--class-name', 'Functional'], 'zoo': ['--vlen-config'], 'zoo_extra': []}
    for case in cases:
        if case['format'] == 'keras_h5':
            run([PYTHON, 'tfjs_to_keras_h5.py', os.path.join(tmp, case['h5_from']), os.path.join(tmp, case['model']),
                 *h5_options[case['group']]])
    run(['node', 'extract_nsfwjs.js', os.path.join(tmp, 'packs')])
    images = decode_images(os.path.join(tmp, 'nsfw', 'rgb'))
    if len(images) < 10:
        die(f'need at least 10 real images in {IMAGES}, found {len(images)}')
    with open(os.path.join(tmp, 'nsfw', 'images.json'), 'w') as f:
        json.dump(images, f)
    for group, pack, probes in (('nsfw_mobilenet_v2', 'nsfw-mobilenet-v2', ['flatten_1', 'out_relu']),
                                ('nsfw_inception_v3', 'nsfw-inception-v3', ['flatten_1', 'mixed10'])):
        prefix = os.path.join(tmp, group, 'ref')
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        run(['node', 'keras_reference.js', 'nsfw', os.path.join(tmp, 'packs', pack), os.path.join(tmp, 'nsfw', 'images.json'),
             prefix, 'wasm', *probes])
        meta = json.load(open(prefix + '.json'))
        check_pack(os.path.join(tmp, 'packs', pack), pack, meta)
        base = {'group': group, 'input': {'file': f'{group}/{meta["input"]["file"]}', 'shape': meta['input']['shape']},
                'outputs': [{**o, 'file': f'{group}/{o["file"]}'} for o in meta['outputs']],
                'reference_backend': meta['backend']}
        cases.append({**base, 'name': f'{group}/tfjs_uint8', 'format': 'tfjs_layers', 'model': f'packs/{pack}/model.json'})
        # The same real weights, dequantised, in a Keras 2.2.4-style .h5 file.
        run([PYTHON, 'tfjs_to_keras_h5.py', os.path.join(tmp, 'packs', pack, 'model.json'), os.path.join(tmp, group, 'model.h5')])
        cases.append({**base, 'name': f'{group}/keras_h5', 'format': 'keras_h5', 'model': f'{group}/model.h5'})
    cases += real_keras_cases(tmp)
    with open(os.path.join(tmp, 'cases.json'), 'w') as f:
        json.dump({'cases': cases}, f, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


def main():
    check_prerequisites()
    cached_dir(OUT, fixture_inputs(), generate, extra=['full' if FULL else 'ci'])
    env = dict(os.environ, ACG2VEC_KERAS_FIXTURES=OUT)
    r = subprocess.run([TEST_BIN, '--gtest_also_run_disabled_tests', '--gtest_filter=KerasParity.*', '--gtest_color=no'], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(r.stdout)
    if r.returncode != 0:
        die('KerasParity tests failed')
    passed = len(re.findall(r'^\[       OK \] KerasParity\.', r.stdout, re.M))
    if 'SKIPPED' in r.stdout or passed != EXPECTED_TESTS:
        die(f'expected {EXPECTED_TESTS} KerasParity tests to pass, {passed} did (skips count as failures)')
    print(f'OK: {passed} KerasParity tests passed')


if __name__ == '__main__':
    main()
