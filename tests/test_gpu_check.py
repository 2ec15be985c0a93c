"""The offline GPU check's own logic (benchmarks/gpu): the version gate, the sizing of its short run
and the scripts' argument errors. The whole check, on a host-like venv with the index unused, is
benchmarks/gpu/smoke-on-cpu.sh (docs/TESTING.md)."""
import importlib.util
import os
import subprocess
from importlib import metadata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU = os.path.join(ROOT, "benchmarks", "gpu")


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(GPU, "check.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_dependency_of_this_environment_is_in_its_range(check):
    rows, problems = check.versions()
    assert problems == []
    assert {r["name"] for r in rows} >= {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "mujoco-mjx"}
    assert next(r for r in rows if r["name"] == "jax")["version"] == metadata.version("jax")


def fake_distributions(monkeypatch, versions: dict):
    """metadata.distribution answers with the given versions (None: not installed), else as it is."""
    real = metadata.distribution

    class Fake:
        def __init__(self, version):
            self.version = version

        def locate_file(self, _):
            return "/fake"

    def distribution(name):
        if name in versions:
            if versions[name] is None:
                raise metadata.PackageNotFoundError(name)
            return Fake(versions[name])
        return real(name)

    monkeypatch.setattr(metadata, "distribution", distribution)


def test_a_version_outside_the_range_or_missing_is_a_one_line_reason(check, monkeypatch):
    fake_distributions(monkeypatch, {"jax": "0.9.0", "mujoco-mjx": None, "warp-lang": None, "numpy": "2.6.0"})
    rows, problems = check.versions()
    assert any(p.startswith("jax 0.9.0 is outside the range ") and "<0.13" in p for p in problems)
    assert any(p.startswith("numpy 2.6.0 is outside the range") for p in problems)
    assert any(p.startswith("mujoco-mjx is not installed") for p in problems)
    assert not any("warp-lang" in p for p in problems)  # optional: only for --physics warp
    warp = next(r for r in rows if r["name"] == "warp-lang")
    assert warp["ok"] and "physics warp" in warp["note"]
    assert len(problems) == 3


def test_the_short_run_is_sized_from_the_headline_projection(check):
    s = check.sizes(smoke=False)
    # a whole run of 3,907 iterations projected at 1 h: 100 s of it is 108 iterations of 4,096 envs
    assert check.short_run_steps({"iterations": 3907, "run_hours": 1.0}, s) == 108 * 4096
    assert check.short_run_steps(None, s) == 20 * 4096  # no headline figure: 20 iterations
    assert check.short_run_steps({"iterations": 10, "run_hours": 10.0}, s) == 2 * 4096  # at least 2


def test_the_full_check_fits_eight_minutes(check):
    box = check.sizes(smoke=False)["box"]
    total = box["device"] + 2 * box["headline"] + 2 * box["physics"] + box["sweep"] + box["run"] + box["tests"]
    assert total <= 480


@pytest.mark.parametrize("script,args,message", [
    ("fetch.sh", [], "usage: benchmarks/gpu/fetch.sh WHEEL_DIR"),
    ("fetch.sh", ["/tmp/x", "--python"], "--python needs a version"),
    ("fetch.sh", ["/tmp/x", "--physics", "jax"], "--physics takes only warp"),
    ("fetch.sh", ["/tmp/x", "--bogus"], "unknown option --bogus"),
    ("check.sh", ["/tmp/x"], "usage: benchmarks/gpu/check.sh WHEEL_DIR OUT_DIR"),
    ("check.sh", ["/nonexistent-wheels", "/tmp/out", "--fast"], "unknown option --fast"),
    ("check.sh", ["/nonexistent-wheels", "/tmp/out"], "no wheels in /nonexistent-wheels"),
])
def test_the_scripts_refuse_bad_arguments_in_one_line(script, args, message):
    proc = subprocess.run(["bash", os.path.join(GPU, script), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_every_fetched_package_is_locked():
    names = [line.strip() for line in open(os.path.join(GPU, "wheels.txt")) if line.strip() and not line.startswith("#")]
    norm = lambda n: n.lower().replace("_", "-").replace(".", "-")  # noqa: E731
    locked = {norm(line.split("==")[0]) for line in open(os.path.join(ROOT, "constraints.txt")) if "==" in line}
    assert names and all(norm(n) in locked for n in names)
