#!/usr/bin/python3
"""Real-CUGAN parity: our ncnn loader + executor + upscaler vs an independent PyTorch reference.

1. tools/realcugan_reference.py builds the upstream UpCunet2x architecture from torch.nn layers,
   loads the committed ncnn weights (models/realcugan-pro-{conservative,no-denoise,denoise3x})
   with its own .bin reader and upscales two crops of a committed drawing (64x64 and 96x81, the
   odd size exercising the extra reflect pad), writing inputs and float outputs.
2. The gtest RealcuganParity.* loads the same packs with our code and requires
   max|ours - ref| <= 1e-4 * max|ref| for the raw network output and for the upscaled image,
   whole (tile 0) and tiled (tile 32, SE means synchronised across tiles), for all three models.

Fixtures are cached in the build tree, keyed by a hash of the generator and the weights; a
failure to produce them fails the test (it never skips).
"""
import hashlib
import os
import shutil
import subprocess
import sys


def main():
    src = os.environ["ACG2VEC_SOURCE_DIR"]
    build = os.environ["ACG2VEC_BUILD_DIR"]
    test_bin = os.environ["ACG2VEC_TEST_BIN"]
    work = os.path.join(build, "tests", "work", "realcugan_parity")
    gen = os.path.join(src, "tools", "realcugan_reference.py")
    models = os.path.join(src, "models")
    digest = hashlib.sha256()
    inputs = [gen] + [os.path.join(models, "realcugan-pro-" + v, f)
                      for v in ("conservative", "no-denoise", "denoise3x") for f in ("model.param", "model.bin")]
    for path in inputs:
        with open(path, "rb") as f:
            digest.update(f.read())
    key = digest.hexdigest()
    stamp = os.path.join(work, "fixtures.stamp")
    if not (os.path.exists(stamp) and open(stamp).read().strip() == key):
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        subprocess.run(["/usr/bin/python3", gen, "--models", models,
                        "--images", os.path.join(src, "tests", "data", "images", "real"), "--out", work], check=True)
        with open(stamp, "w") as f:
            f.write(key)
    env = dict(os.environ, ACG2VEC_CUGAN_PARITY_DIR=work)
    proc = subprocess.run([test_bin, "--gtest_also_run_disabled_tests", "--gtest_filter=RealcuganParity.*"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(proc.stdout)
    if proc.returncode != 0:
        print("FAIL: parity gtest failed")
        return 1
    if "[  PASSED  ] 1 test" not in proc.stdout or "SKIPPED" in proc.stdout:
        print("FAIL: the parity gtest did not run")
        return 1
    print("PASS: all three models within 1e-4 * max|output| of the PyTorch reference, whole and tiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
