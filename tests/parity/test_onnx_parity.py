#!/usr/bin/python3
"""ONNX model parity: our executor vs PyTorch eager vs ONNX Runtime.

1. tools/export_onnx_models.py (python3-torch) exports ResNet-50, DeepDanbooru, MobileNetV2, ConvNeXt-T,
   ViT-B/16, Swin-T, a WD-style tagger ViT (NHWC), the small "mixed" graph and a BERT-style encoder
   (reduced widths, 64x64 images, mixed at 96x96; random weights with
   randomised BatchNorm statistics) and records eager outputs for batch 1 and 4.
2. tools/onnx_reference.js runs the same files on the same inputs with ONNX Runtime (npm
   onnxruntime-node, CPU).
3. The gtest RuntimeParity.* loads each file with our ONNX loader and executor and requires
   max|ours - ref| <= 1e-4 * max|ref| against both references (see runtime_parity_test.cpp).

Fixtures are cached in the build tree, keyed on the content of both generator scripts and the npm lock
file and made under a file lock (tests/integration/fixture_cache.py). Any failure to produce them fails
this test; it never skips.
"""
import os
import subprocess
import sys


def main():
    src = os.environ["ACG2VEC_SOURCE_DIR"]
    build = os.environ["ACG2VEC_BUILD_DIR"]
    test_bin = os.environ["ACG2VEC_TEST_BIN"]
    work = os.path.join(build, "tests", "work", "onnx_parity")
    export = os.path.join(src, "tools", "export_onnx_models.py")
    reference = os.path.join(src, "tools", "onnx_reference.js")
    if not os.path.isdir(os.path.join(src, "tools", "node_modules", "onnxruntime-node")):
        print("FAIL: tools/node_modules/onnxruntime-node is missing; run scripts/setup.sh "
              "(npm install in tools/ with ONNXRUNTIME_NODE_INSTALL=skip)")
        return 1

    def make(out):
        subprocess.run(["/usr/bin/python3", export, "--out", out, "--profile", "ci"], check=True)
        subprocess.run(["node", reference, out], check=True)

    sys.path.insert(0, os.path.join(src, "tests", "integration"))
    from fixture_cache import cached_dir
    cached_dir(work, [export, reference, os.path.join(src, "tools", "package-lock.json")], make)

    env = dict(os.environ, ACG2VEC_ONNX_PARITY_DIR=work)
    proc = subprocess.run([test_bin, "--gtest_also_run_disabled_tests", "--gtest_filter=RuntimeParity.*"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    print(proc.stdout)
    if proc.returncode != 0:
        print("FAIL: parity gtest failed")
        return 1
    if "[  PASSED  ] 1 test" not in proc.stdout or "SKIPPED" in proc.stdout:
        print("FAIL: the parity gtest did not run")
        return 1
    print("PASS: all models within 1e-4 * max|output| of PyTorch eager and ONNX Runtime")
    return 0


if __name__ == "__main__":
    sys.exit(main())
