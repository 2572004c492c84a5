#!/usr/bin/python3
"""Rewrites a Keras .h5 model as a TF.js layers-model (model.json + one float32 weight shard) with h5py
only, so that TensorFlow.js can run the very weights and architecture of a file written by real Keras.

    keras_h5_to_tfjs.py MODEL.h5 OUT_DIR

model.json's modelTopology is the file's model_config as written (TF.js reads Keras configs);
weights are named as TF.js looks them up: '<layer>/<weight>' for a plain layer (Keras 2.0 files store
'conv2d_1_1/kernel:0' under layer conv2d_1, so only the last part of the stored name is kept), and the
stored '<inner layer>/<weight>' for the layers of a nested model.
Also prints a JSON summary: keras_version, input shape, output layer name.
"""
import json
import os
import sys

import h5py
import numpy as np

NESTED = ("Model", "Functional", "Sequential")


def text(v):
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def layer_list(config):
    c = config["config"]
    return c if isinstance(c, list) else c["layers"]


def layer_name(layer):
    return layer.get("name") or layer["config"]["name"]


def main(src, out_dir):
    with h5py.File(src, "r") as f:
        model = json.loads(text(f.attrs["model_config"]))
        weights_root = f["model_weights"] if "model_weights" in f else f
        classes = {layer_name(l): l["class_name"] for l in layer_list(model)}
        specs, blobs = [], []
        for lname in (text(n) for n in weights_root.attrs["layer_names"]):
            group = weights_root[lname]
            for wname in (text(n) for n in group.attrs["weight_names"]):
                data = np.asarray(group[wname], dtype=np.float32)
                short = wname[:-2] if wname.endswith(":0") else wname
                if classes.get(lname) not in NESTED:
                    short = f"{lname}/{short.rsplit('/', 1)[-1]}"
                specs.append({"name": short, "shape": list(data.shape), "dtype": "float32"})
                blobs.append(np.ascontiguousarray(data).tobytes())
        topology = {"class_name": model["class_name"], "config": model["config"],
                    "keras_version": text(f.attrs.get("keras_version", "")), "backend": text(f.attrs.get("backend", ""))}
        keras_version = topology["keras_version"]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "group1-shard1of1.bin"), "wb") as f:
        for b in blobs:
            f.write(b)
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump({"format": "layers-model", "modelTopology": topology,
                   "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": specs}]}, f)

    layers = layer_list(model)
    if model["class_name"] == "Sequential":
        first = layers[0]["config"]
        output = layer_name(layers[-1])
    else:
        first = next(l for l in layers if l["class_name"] == "InputLayer")["config"]
        output = model["config"]["output_layers"][0][0]
    shape = first.get("batch_input_shape")
    print(json.dumps({"keras_version": keras_version, "input_shape": shape, "output": output,
                      "weights": len(specs)}))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2])
