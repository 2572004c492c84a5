#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (see fuzz/corpus/README.md).

    /usr/bin/python3 fuzz/make_corpus.py KERAS_REFERENCE_DIR

KERAS_REFERENCE_DIR is the output of `node tools/keras_reference.js models DIR` (TF.js zoo models);
the Keras .h5 seeds are converted from them with tools/tfjs_to_keras_h5.py. Images are copied from
tests/data/images; ONNX seeds come from torch.onnx.export and onnx.helper; safetensors, HTTP and
JSON seeds are written here. Deterministic apart from the tools' own output.
"""
import base64
import io
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, 'fuzz', 'corpus')


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data if isinstance(data, bytes) else data.encode('utf8'))


def images():
    src = os.path.join(ROOT, 'tests', 'data', 'images')
    for sub in ('formats', 'bad'):
        for name in sorted(os.listdir(os.path.join(src, sub))):
            path = os.path.join(src, sub, name)
            if os.path.getsize(path) <= 13000 and name != 'card_multipage.tif':
                with open(path, 'rb') as f:
                    out('image', f'{sub}_{name}', f.read())


def tfjs_and_h5(ref_dir):
    for model in ('zoo', 'zoo_extra'):
        base = os.path.join(ref_dir, model, 'float32')
        with open(os.path.join(base, 'model.json'), 'rb') as f:
            model_json = f.read()
        with open(os.path.join(base, 'group1-shard1of1.bin'), 'rb') as f:
            shard = f.read()
        out('tfjs', f'{model}.tfjs', model_json + b'\0' + shard)
        h5 = os.path.join('/tmp', f'acg2vec_fuzz_{model}.h5')
        subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'tfjs_to_keras_h5.py'),
                        os.path.join(base, 'model.json'), h5], check=True)
        with open(h5, 'rb') as f:
            out('keras_h5', f'{model}.h5', f.read())
        os.remove(h5)


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return torch.softmax(self.fc(x), dim=1), torch.sigmoid(x)


def onnx_seeds():
    torch.manual_seed(0)
    m = Tiny().eval()
    buf = io.BytesIO()
    torch.onnx.export(m, torch.zeros(1, 3, 8, 8), buf, opset_version=13, input_names=['image'],
                      output_names=['probs', 'features'], dynamic_axes={'image': {0: 'batch'}})
    out('onnx_loader', 'tiny_conv.onnx', buf.getvalue())

    # Hand-made graphs: shape ops, an fp16 initializer, integer constants, a Gather on a table.
    table = numpy_helper.from_array(np.arange(12, dtype=np.float16).reshape(4, 3), 'table')
    shape = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), 'shape')
    nodes = [
        helper.make_node('Gather', ['table', 'ids'], ['g'], axis=0),
        helper.make_node('Reshape', ['g', 'shape'], ['r']),
        helper.make_node('Cast', ['r'], ['c'], to=TensorProto.FLOAT),
        helper.make_node('ReduceMean', ['c'], ['y'], axes=[1], keepdims=0),
    ]
    g = helper.make_graph(nodes, 'gather', [helper.make_tensor_value_info('ids', TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])], [table, shape])
    out('onnx_loader', 'gather_fp16.onnx', helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]).SerializeToString())

    # A tensor stored as external data (refused or resolved inside the model folder only).
    w = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), 'w')
    w.ClearField('raw_data')
    w.data_location = TensorProto.EXTERNAL
    for k, v in (('location', 'weights.bin'), ('offset', '0'), ('length', '16')):
        e = w.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph([helper.make_node('MatMul', ['x', 'w'], ['y'])], 'external',
                          [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 2])], [w])
    out('onnx_loader', 'external_data.onnx', helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]).SerializeToString())


def safetensors(tensors, metadata=None):
    header = {}
    data = b''
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header['__metadata__'] = metadata
    h = json.dumps(header).encode()
    h += b' ' * (-len(h) % 8)
    return struct.pack('<Q', len(h)) + h + data


def safetensors_seeds():
    f32 = np.arange(6, dtype=np.float32).tobytes()
    out('safetensors', 'two.safetensors', safetensors({
        'a.weight': ('F32', [2, 3], f32),
        'b.bias': ('F16', [2], np.array([1, 2], dtype=np.float16).tobytes())}, {'format': 'pt'}))
    out('safetensors', 'dtypes.safetensors', safetensors({
        'i64': ('I64', [2], np.array([1, -1], dtype=np.int64).tobytes()),
        'i32': ('I32', [1, 1], np.array([7], dtype=np.int32).tobytes()),
        'u8': ('U8', [3], b'\x01\x02\x03'),
        'b': ('BOOL', [2], b'\x00\x01'),
        'bf16': ('BF16', [2], b'\x80\x3f\x00\x40'),
        'f64': ('F64', [1], np.array([0.5]).tobytes()),
        'empty': ('F32', [0, 4], b'')}))


def http_seeds():
    def multipart(path, fields, files, boundary='XyZb0undary'):
        body = b''
        for k, v in fields:
            body += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, fname, ctype, data in files:
            body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{fname}"\r\n'
                     f'Content-Type: {ctype}\r\n\r\n').encode() + data + b'\r\n'
        body += f'--{boundary}--\r\n'.encode()
        return (f'POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n'
                f'Content-Length: {len(body)}\r\n\r\n').encode() + body

    with open(os.path.join(ROOT, 'tests', 'data', 'images', 'formats', 'card.png'), 'rb') as f:
        png = f.read()
    out('http_parse', 'tag.http', multipart('/v1/tag', [('threshold', '0.4'), ('all', 'true'), ('model', 'wd')],
                                            [('image', 'a.png', 'image/png', png)]))
    out('http_parse', 'seed_insert.http', multipart('/images/0042', [('extend', '{"title": "x", "n": [1, 2]}')],
                                                    [('file', 'b.png', 'image/png', png)]))
    out('http_parse', 'items_create.http', multipart('/v1/items', [('id', '12'), ('source', 's'), ('metadata', '{"a": 1}')],
                                                     [('file', 'c.png', 'image/png', png)]))
    out('http_parse', 'search_multipart.http', multipart('/v1/search', [('k', '5'), ('tags', 'a,b c'), ('any', 'x'),
                                                                        ('cutoff', '0.5'), ('min_score', '0.1')],
                                                         [('image', 'q.png', 'image/png', png)]))
    out('http_parse', 'batch.http', multipart('/v1/items/batch', [], [('file', '1.png', 'image/png', png),
                                                                      ('file', '2.png', 'image/png', b'')]))

    def req(method, path, body=b'', ctype=None, extra=''):
        head = f'{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}'
        if ctype:
            head += f'Content-Type: {ctype}\r\n'
        if body or method in ('POST', 'PUT'):
            head += f'Content-Length: {len(body)}\r\n'
        return head.encode() + b'\r\n' + body

    out('http_parse', 'search_query.http', req('GET', '/v1/search?text=blue%20sky&k=3&offset=2&tags=a,b&none=c&rating=safe'))
    out('http_parse', 'search_json.http', req('POST', '/v1/search', b'{"text": "x", "k": 3, "tags": {"all": ["a"], "none": "b c"}}',
                                              'application/json'))
    out('http_parse', 'items_list.http', req('GET', '/v1/items?offset=10&limit=5', extra='X-Request-Id: abc-1\r\n'))
    out('http_parse', 'urlencoded.http', req('POST', '/models/acgvoc2vec/feature', b'text=%E6%97%A5%E6%9C%AC+girl&x=1&x=2',
                                             'application/x-www-form-urlencoded'))
    out('http_parse', 'predict.http', req('POST', '/v1/models/tiny/versions/1:predict',
                                          b'{"instances": [{"b64": "' + base64.b64encode(png) + b'"}]}', 'application/json'))
    out('http_parse', 'infer.http', req('POST', '/v1/models/tiny/infer', b'{"inputs": [[1, 2], [3, 4.5]]}', 'application/json'))
    out('http_parse', 'replace.http', req('PUT', '/v1/items/abc', b'{"metadata": {"k": "v"}}', 'application/json'))
    chunked = (b'POST /v1/search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n'
               b'5\r\n{"k":\r\n3\r\n 2}\r\n0\r\n\r\n')
    out('http_parse', 'chunked.http', chunked)
    out('http_parse', 'range.http', req('GET', '/v1/items?limit=1', extra='Range: bytes=0-10, 20-\r\n'))


def json_seeds():
    with open(os.path.join(ROOT, 'tests', 'data', 'images', 'formats', 'card.png'), 'rb') as f:
        png = f.read()
    b64 = base64.b64encode(png).decode()
    url = base64.urlsafe_b64encode(png).decode().rstrip('=')
    seeds = {
        'predict_row.json': {'instances': [{'b64_input_bytes': url}, {'b64': b64}, b64]},
        'predict_columnar.json': {'inputs': {'b64_input_bytes': [{'b64': b64}]}},
        'predict_ids.json': {'instances': [{'input_ids': [101, 2000, 102], 'attention_mask': [1, 1, 1]}, [1, 2, 3]]},
        'predict_numbers.json': {'inputs': [[[0.5, 1.5], [2, 3]]], 'signature_name': 'serving_default'},
        'search.json': {'id': 42, 'text': 'girl', 'space': 'clip', 'k': 5, 'offset': 1, 'cutoff': 0.3,
                        'tags': {'all': ['a'], 'any': 'b,c', 'none': []}, 'rating': 'safe', 'tagger': 'wd', 'min_score': 0.5},
        'search_tags_list.json': {'tags': ['x', 'y'], 'id': 'item-1'},
        'infer.json': {'inputs': [[[1, 2, 3]], [[4, 5, 6]]]},
        'metadata.json': {'metadata': {'title': 't', 'nested': {'a': [1, None, True]}}},
    }
    for name, value in seeds.items():
        out('json_body', name, json.dumps(value))


def text_seeds():
    texts = {
        'ascii.txt': 'a girl with blue eyes, long hair; smiling!',
        'cjk.txt': '日本語のテキスト 初音ミク 안녕하세요 中文',
        'accents.txt': 'Café NAÏVE résumé Ångström ﬁ ½',
        'specials.txt': '[CLS] hello [SEP] <|startoftext|>x<|endoftext|> [MASK] [UNK]',
        'emoji.txt': 'smile 😀👍🏽 ❤️ \u200d\u2028\t\r\n  spaced   out ',
        'long_word.txt': 'x' * 150 + ' ' + 'ab' * 40,
        'numbers.txt': "it's 3.14159 and 1,000,000 don't we'll I'M",
        'invalid_utf8.bin': b'ok \xff\xfe bad \xc3\x28 \xe2\x82 \xf0\x9f\x98 end \x00 nul',
        'controls.bin': b'\x01\x02\x1b[31mred\x7f\xc2\x80\xc2\x9f',
    }
    for target in ('wordpiece', 'clip_bpe'):
        for name, value in texts.items():
            out(target, name, value)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for target in ('image', 'http_parse', 'json_body', 'wordpiece', 'clip_bpe', 'onnx_loader', 'keras_h5', 'tfjs', 'safetensors'):
        shutil.rmtree(os.path.join(CORPUS, target), ignore_errors=True)
    images()
    tfjs_and_h5(sys.argv[1])
    onnx_seeds()
    safetensors_seeds()
    http_seeds()
    json_seeds()
    text_seeds()


if __name__ == '__main__':
    main()
