"""deploy/Dockerfile and deploy/docker-compose.yaml cannot be run here (no Docker engine), so they
are parsed and checked against the binary's real flags (`acg2vec --help`, `acg2vec serve --help`)
and against scripts/setup.sh's package list."""
import os
import re
import subprocess
import sys
import unittest
from urllib.parse import urlparse

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN  # noqa: E402

import yaml  # python3-yaml from Debian (scripts/setup.sh)  # noqa: E402

SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(SOURCE, "deploy")


def help_env_vars(*args):
    out = subprocess.run([BIN, *args, "--help"], capture_output=True, text=True, timeout=60).stdout
    return dict(re.findall(r"^\s+(--[\w-]+)[^\n]*\(Env:(ACG2VEC_\w+)\)", out, re.M))


def dockerfile_stages(text):
    text = text.replace("\\\n", " ")
    stages, current = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            current = {"from": rest.split()[0], "name": rest.split()[-1] if " AS " in rest.upper() else None,
                       "lines": []}
            stages.append(current)
        current["lines"].append((word, rest.strip()))
    return stages


def setup_packages():
    with open(os.path.join(SOURCE, "scripts", "setup.sh")) as f:
        text = f.read()
    body = re.search(r"APT_PACKAGES=\((.*?)\n\)", text, re.S).group(1)
    groups, name = {}, None
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("#"):
            name = line.lstrip("# ").split()[0]
            groups[name] = []
        elif line:
            groups[name].extend(line.split())
    return groups


class DeployFilesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(DEPLOY, "docker-compose.yaml")) as f:
            cls.compose = yaml.safe_load(f)
        with open(os.path.join(DEPLOY, "Dockerfile")) as f:
            cls.stages = dockerfile_stages(f.read())
        cls.global_env = help_env_vars()
        cls.serve_env = help_env_vars("serve")
        cls.known_env = set(cls.global_env.values()) | set(cls.serve_env.values())

    def test_binary_exposes_the_scale_out_flags(self):
        self.assertEqual(self.global_env.get("--store"), "ACG2VEC_STORE")
        self.assertEqual(self.global_env.get("--index"), "ACG2VEC_INDEX")
        self.assertEqual(self.serve_env.get("--port"), "ACG2VEC_PORT")
        self.assertEqual(self.serve_env.get("--host"), "ACG2VEC_HOST")

    def test_services_and_images(self):
        services = self.compose["services"]
        self.assertEqual(set(services), {"acg2vec", "redis", "milvus", "etcd", "minio"})
        self.assertTrue(services["milvus"]["image"].startswith("milvusdb/milvus:v2."))
        self.assertTrue(services["redis"]["image"].startswith("redis:"))
        self.assertTrue(services["etcd"]["image"].startswith("quay.io/coreos/etcd:"))
        self.assertTrue(services["minio"]["image"].startswith("minio/minio:"))
        build = services["acg2vec"]["build"]
        self.assertTrue(os.path.exists(os.path.join(DEPLOY, build["context"], build["dockerfile"])))
        milvus_env = services["milvus"]["environment"]
        self.assertEqual(milvus_env["ETCD_ENDPOINTS"].split(":")[0], "etcd")
        self.assertEqual(milvus_env["MINIO_ADDRESS"].split(":")[0], "minio")
        redis_cmd = " ".join(services["redis"]["command"])
        self.assertIn("--appendonly yes", redis_cmd)  # the outage guarantee needs AOF
        for name, svc in services.items():
            self.assertIn("healthcheck", svc, name)

    def test_acg2vec_environment_matches_flags(self):
        app = self.compose["services"]["acg2vec"]
        env = app["environment"]
        for key in env:
            self.assertIn(key, self.known_env, f"{key} is not an environment variable the binary reads")
        store = urlparse(env["ACG2VEC_STORE"])
        self.assertEqual(store.scheme, "redis")
        self.assertIn(store.hostname, self.compose["services"])
        index = urlparse(env["ACG2VEC_INDEX"])
        self.assertEqual(index.scheme, "milvus")
        self.assertIn(index.hostname, self.compose["services"])
        milvus_ports = [str(p).split(":")[-1] for p in self.compose["services"]["milvus"].get("ports", [])]
        self.assertIn(str(index.port), milvus_ports)
        # Published port, health check and the bound port agree.
        port = str(env["ACG2VEC_PORT"])
        self.assertIn(f"8081:{port}", [str(p) for p in app["ports"]])
        self.assertIn(f"127.0.0.1:{port}/health", " ".join(app["healthcheck"]["test"]))
        self.assertEqual(env["ACG2VEC_HOST"], "0.0.0.0")
        # The data and models directories are volumes, declared at the top level.
        mounts = {v.split(":")[1]: v.split(":")[0] for v in app["volumes"]}
        for key in ("ACG2VEC_DATA_DIR", "ACG2VEC_MODELS_DIR"):
            self.assertIn(env[key], mounts, key)
            self.assertIn(mounts[env[key]], self.compose["volumes"])
        for name in ("redis", "milvus"):
            self.assertEqual(app["depends_on"][name]["condition"], "service_healthy")

    def test_dockerfile(self):
        self.assertEqual([s["from"] for s in self.stages], ["debian:12", "debian:12-slim"])
        build, runtime = self.stages
        installed = " ".join(rest for word, rest in build["lines"] if word == "RUN")
        groups = setup_packages()
        for group in ("toolchain", "libraries"):
            for package in groups[group]:
                self.assertIn(f" {package} ", f" {installed} ", f"build stage lacks {package} from setup.sh")
        copies = [rest for word, rest in runtime["lines"] if word == "COPY"]
        self.assertTrue(any("/usr/local/bin/acg2vec" in c for c in copies))
        # serve looks for its page in /usr/local/share/acg2vec/web (see src/cli/serve.cpp).
        self.assertTrue(any(c.endswith("/usr/local/share/acg2vec/web") for c in copies))
        self.assertTrue(any("models" in c for c in copies))
        env_line = " ".join(rest for word, rest in runtime["lines"] if word == "ENV")
        env = dict(re.findall(r"(ACG2VEC_\w+)=(\S+)", env_line))
        for key in env:
            self.assertIn(key, self.known_env)
        expose = [rest for word, rest in runtime["lines"] if word == "EXPOSE"]
        self.assertEqual(expose, [env["ACG2VEC_PORT"]])
        health = " ".join(rest for word, rest in runtime["lines"] if word == "HEALTHCHECK")
        self.assertIn("/health", health)
        volumes = " ".join(rest for word, rest in runtime["lines"] if word == "VOLUME")
        self.assertIn(env["ACG2VEC_DATA_DIR"], volumes)
        entry = [rest for word, rest in runtime["lines"] if word == "ENTRYPOINT"]
        self.assertEqual(entry, ['["/usr/local/bin/acg2vec"]'])

    def test_binary_accepts_the_compose_environment(self):
        # The same variables, with the store address swapped for an unreachable port: the binary
        # must accept every value and fail only on the connection (exit code 7 = unavailable),
        # not on a flag (exit code 2 or CLI11's parse errors).
        env = dict(os.environ, **{k: str(v) for k, v in self.compose["services"]["acg2vec"]["environment"].items()})
        env["ACG2VEC_STORE"] = "redis://127.0.0.1:1?connect_timeout_ms=200"
        env["ACG2VEC_DATA_DIR"] = os.path.join(os.environ.get("ACG2VEC_BUILD_DIR", "/tmp"), "deploy-test-data")
        env["ACG2VEC_MODELS_DIR"] = env["ACG2VEC_DATA_DIR"]
        env["ACG2VEC_PORT"] = "0"
        r = subprocess.run([BIN, "serve"], capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 7, r.stderr)
        self.assertIn("redis at 127.0.0.1:1", r.stderr)


if __name__ == "__main__":
    unittest.main()
