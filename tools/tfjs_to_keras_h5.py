#!/usr/bin/python3
"""Writes a TF.js layers-model (quantised weights are dequantised as tfjs does) as a Keras HDF5 model file, in the layout tf.keras 2.x
model.save('x.h5') produces, so the .h5 loader can be tested on the same weights as the TF.js one.

  /usr/bin/python3 tools/tfjs_to_keras_h5.py MODEL_JSON OUT_H5 [--class-name Functional] [--vlen-config]

Layout written (tf.keras 2.x hdf5_format.save_model_to_hdf5 / save_weights_to_hdf5_group):
  /                 attrs keras_version, backend (str), model_config (JSON, bytes by default)
  /model_weights    attrs layer_names (fixed-length byte strings), keras_version, backend
  /model_weights/<layer>              attr weight_names: b'<layer>/kernel:0', ...
  /model_weights/<layer>/<layer>/kernel:0   the dataset (Keras layout, e.g. HWIO)
Every layer gets a group, layers without weights an empty weight_names.
"""
import argparse
import json
import os

import h5py
import numpy as np


def shard(base, name):
    path = os.path.join(base, name)
    if os.path.exists(path) or not os.path.exists(path + '.bin'):
        return path
    return path + '.bin'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('model_json')
    ap.add_argument('out_h5')
    ap.add_argument('--class-name', default=None, help='override the model class_name (Model/Functional)')
    ap.add_argument('--vlen-config', action='store_true', help='store model_config as a variable-length str')
    args = ap.parse_args()

    with open(args.model_json) as f:
        model = json.load(f)
    topology = model['modelTopology']
    config = topology.get('model_config', topology)
    config = {'class_name': args.class_name or config['class_name'], 'config': config['config']}
    base = os.path.dirname(args.model_json)

    weights = {}
    for group in model['weightsManifest']:
        data = b''.join(open(shard(base, p), 'rb').read() for p in group['paths'])
        offset = 0
        for spec in group['weights']:
            if spec.get('dtype', 'float32') != 'float32':
                raise SystemExit(f'{spec["name"]}: only float32 weights can be written as .h5')
            n = int(np.prod(spec['shape'])) if spec['shape'] else 1
            quant = spec.get('quantization')
            if quant is None:
                value = np.frombuffer(data, dtype='<f4', count=n, offset=offset)
                offset += 4 * n
            elif quant['dtype'] in ('uint8', 'uint16'):
                # tfjs io.decodeWeights: min + scale * q, evaluated in double, stored as float32.
                q = np.frombuffer(data, dtype='u1' if quant['dtype'] == 'uint8' else '<u2', count=n, offset=offset)
                offset += q.itemsize * n
                value = (quant['min'] + quant['scale'] * q.astype(np.float64)).astype(np.float32)
            elif quant['dtype'] == 'float16':
                value = np.frombuffer(data, dtype='<f2', count=n, offset=offset).astype(np.float32)
                offset += 2 * n
            else:
                raise SystemExit(f'{spec["name"]}: unsupported quantization {quant}')
            value = value.reshape(spec['shape'])
            layer, short = spec['name'].rsplit('/', 1)
            weights.setdefault(layer, []).append((short, value))

    layer_names = [layer['name'] for layer in config['config']['layers']]
    with h5py.File(args.out_h5, 'w') as f:
        f.attrs['keras_version'] = '2.11.0'
        f.attrs['backend'] = 'tensorflow'
        text = json.dumps(config)
        f.attrs['model_config'] = text if args.vlen_config else text.encode('utf8')
        mw = f.create_group('model_weights')
        mw.attrs['layer_names'] = np.array([n.encode('utf8') for n in layer_names])
        mw.attrs['backend'] = 'tensorflow'
        mw.attrs['keras_version'] = '2.11.0'
        for name in layer_names:
            g = mw.create_group(name)
            entries = weights.get(name, [])
            names = [f'{name}/{short}:0'.encode('utf8') for short, _ in entries]
            g.attrs['weight_names'] = np.array(names) if names else np.array([], dtype='S1')
            for (short, value), full in zip(entries, names):
                g.create_dataset(full.decode('utf8'), data=value)


if __name__ == '__main__':
    main()
