"""The offline GPU check (benchmarks/gpu/README.md): everything the README promises of a GPU, measured
by one command in a few minutes, each part time-boxed in its own process, so that a part that fails
or runs out of time is reported and the next part still runs.

    python benchmarks/gpu/check.py OUT_DIR [--smoke]

(check.sh installs the fetched wheels into a private folder and runs this with it on the path.)
Parts: (a) the device; (b) bench's headline config of ant at 4,096 envs, SAC and SMFP; (c) the raw
MJX stepping rate of ant and humanoid at 4,096 envs; (d) the seed sweep S = 1, 2, 4, 8; (e) a short
headline SAC run sized from (b) to take about two minutes; (f) a fast subset of the tests that
exercises the GPU code paths. OUT_DIR gets results.json (every figure), results.md (the tables),
curve.png (the run's curve) and log.txt (every part's output). --smoke: tiny sizes (a cheap env for
(b), (d) and (e), 16 envs), for testing the check itself on a CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPTIONAL = {"warp-lang": "only for --physics warp", "imageio-ffmpeg": "only for videos"}
TESTS = [  # the GPU code paths: one compile per chunk under the transfer guard, donation, background saves
    "tests/test_loop.py::test_chunk_runs_without_host_transfers_and_compiles_once",
    "tests/test_loop.py::test_input_state_is_donated",
    "tests/test_loop.py::test_background_save_is_whole_though_the_next_chunk_donates_the_state",
    "tests/test_loop.py::test_resume_equals_uninterrupted",
    "tests/test_loop.py::test_resume_is_exact_on_an_mjx_env",
    "tests/test_devices.py::test_device_count_rules",
]


def sizes(smoke: bool) -> dict:
    """Sizes and time boxes (seconds) of each part; the full check fits 8 minutes on one H100-class GPU."""
    if smoke:
        return dict(env="inverted_pendulum", physics_envs=("ant", "humanoid"), num_envs=16, iters=5, repeats=2,
                    seeds=(1, 2), run_s=30, box=dict(device=60, headline=150, physics=120, sweep=150, run=150, tests=240))
    return dict(env="ant", physics_envs=("ant", "humanoid"), num_envs=4096, iters=10, repeats=2, seeds=(1, 2, 4, 8),
                run_s=100, box=dict(device=15, headline=75, physics=25, sweep=85, run=130, tests=50))


# ---- versions -----------------------------------------------------------------------------------

def versions() -> tuple[list[dict], list[str]]:
    """Every dependency of pyproject.toml: its version, where it is installed and whether it is in
    the range; the problems as one-line reasons."""
    import tomllib
    from importlib import metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip carries a copy
        from pip._vendor.packaging.requirements import Requirement
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    rows, problems = [], []
    for spec in deps:
        req = Requirement(spec)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            note = OPTIONAL.get(req.name)
            rows.append({"name": req.name, "version": None, "range": str(req.specifier), "where": None,
                         "ok": note is not None, "note": note or "missing"})
            if note is None:
                problems.append(f"{req.name} is not installed (pyproject.toml wants {req.specifier})")
            continue
        ok = req.specifier.contains(dist.version, prereleases=True)
        rows.append({"name": req.name, "version": dist.version, "range": str(req.specifier),
                     "where": str(dist.locate_file("")), "ok": ok, "note": "" if ok else "outside the range"})
        if not ok:
            problems.append(f"{req.name} {dist.version} is outside the range {req.specifier} of pyproject.toml")
    return rows, problems


# ---- the parts, each run in its own process (check.py --part NAME) --------------------------------

def emit(row: dict) -> None:
    print("@@ " + json.dumps(row), flush=True)


def part_device(s: dict, arg: str) -> None:
    import jax

    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    emit({"backend": jax.default_backend(), "device": getattr(dev, "device_kind", dev.platform),
          "device_count": jax.device_count(), "memory_bytes": (stats or {}).get("bytes_limit"),
          "jax": jax.__version__, "jaxlib": __import__("jaxlib").__version__})


def _bench_config(s: dict, work: str, env: str | None = None):
    """The part's bench config, its persistent compilation cache (shared by the parts) turned on."""
    from mjxflow.bench import BenchConfig, enable_compile_cache

    cfg = BenchConfig(env=env or s["env"], num_envs=(s["num_envs"],), iters=s["iters"], repeats=s["repeats"],
                      compile_cache=os.path.join(work, "jax-cache"))
    enable_compile_cache(cfg.compile_cache)
    return cfg


def part_headline(s: dict, agent: str, work: str) -> None:
    from mjxflow.bench import measure_headline

    cfg = _bench_config(s, work)
    emit(measure_headline(cfg, agent, s["num_envs"], log=lambda *a, **k: None))


def part_physics(s: dict, env: str, work: str) -> None:
    from mjxflow.bench import _time_env_only
    from mjxflow.config import TrainConfig
    from mjxflow.loop import build_loop

    cfg = _bench_config(s, work, env)
    loop = build_loop(TrainConfig(env=env, agent="sac", num_envs=s["num_envs"], num_seeds=1, compile_cache=None))
    seconds = _time_env_only(loop, loop.initial_state(), cfg)
    emit({"env": env, "num_envs": s["num_envs"], "step_s": seconds, "env_steps_per_s": s["num_envs"] / seconds})


def part_sweep(s: dict, seeds: str, work: str) -> None:
    from mjxflow.bench import measure_training

    cfg = _bench_config(s, work)
    r = measure_training(cfg, "sac", s["num_envs"], int(seeds))
    r["chunk_s"] = r["iteration_s"] * cfg.iters
    emit(r)


PARTS = {"device": part_device, "headline": part_headline, "physics": part_physics, "sweep": part_sweep}


# ---- the driver ----------------------------------------------------------------------------------

class Runner:
    def __init__(self, out: str, work: str, smoke: bool):
        self.out, self.work, self.smoke = out, work, smoke
        self.log = open(os.path.join(out, "log.txt"), "a")
        self.status: list[dict] = []

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def run(self, label: str, cmd: list[str], box: float, env: dict | None = None) -> tuple[list[dict], str, int | None]:
        """Run cmd for at most box seconds; its @@ rows, its whole output and its exit status
        (None: timed out). Output goes to log.txt as it is."""
        self.say(f"== {label} (at most {box:.0f} s): {' '.join(cmd)}")
        path = os.path.join(self.work, "part.out")
        t = time.perf_counter()
        with open(path, "w") as f:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, **(env or {})}, start_new_session=True)
            try:
                rc = proc.wait(timeout=box)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
                rc = None
        seconds = time.perf_counter() - t
        text = open(path).read()
        self.log.write(text)
        rows = [json.loads(line[3:]) for line in text.splitlines() if line.startswith("@@ ")]
        last = next((line for line in reversed(text.splitlines()) if line.strip() and not line.startswith("@@ ")), "")
        state = "ok" if rc == 0 else (f"timed out after {box:.0f} s" if rc is None else f"failed (exit {rc}): {last[:200]}")
        self.status.append({"part": label, "state": state, "seconds": round(seconds, 1)})
        self.say(f"   {label}: {state} in {seconds:.1f} s")
        return rows, text, rc

    def part(self, name: str, arg: str, box: float) -> list[dict]:
        cmd = [sys.executable, os.path.abspath(__file__), "--part", name, "--arg", arg, "--work", self.work]
        if self.smoke:
            cmd.append("--smoke")
        rows, _, _ = self.run(f"{name} {arg}".strip(), cmd, box)
        return rows


def short_run_steps(headline: dict | None, s: dict) -> int:
    """Env steps per seed that make the headline SAC run take about s['run_s'] seconds of training
    and evaluation, from (b)'s projected whole run; 20 iterations where (b) has no figure."""
    n = s["num_envs"]
    if not headline:
        return 20 * n
    iters = headline["iterations"] * s["run_s"] / (headline["run_hours"] * 3600)
    return max(2, int(iters)) * n


def final_returns(run_dir: str) -> list[float]:
    from mjxflow.plot import load_curves

    return [float(x) for x in load_curves(run_dir).returns[:, -1]]


def check(out: str, smoke: bool) -> int:
    s = sizes(smoke)
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="mjxflow-gpu-check-")
    r = Runner(out, work, smoke)
    result: dict = {"smoke": smoke, "sizes": {k: v for k, v in s.items() if k != "box"}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    t0 = time.perf_counter()
    rows, problems = versions()
    result["versions"] = rows
    r.say(f"python {sys.version.split()[0]} at {sys.executable}")
    for v in rows:
        r.say(f"  {v['name']:<18} {v['version'] or '-':<12} {v['range']:<18} {v['note'] or v['where']}")
    if problems:
        r.say("check: " + "; ".join(problems))
        return 2
    box = s["box"]
    dev = r.part("device", "", box["device"])
    result["device"] = dev[0] if dev else None
    if dev:
        d = dev[0]
        mem = f", {d['memory_bytes'] / 2**30:.1f} GiB" if d.get("memory_bytes") else ""
        r.say(f"   device: {d['backend']} {d['device']} x {d['device_count']}{mem}, jax {d['jax']}")
    result["headline"] = [row for a in ("sac", "smfp") for row in r.part("headline", a, box["headline"])]
    result["physics"] = [row for e in s["physics_envs"] for row in r.part("physics", e, box["physics"])]
    sweep, deadline = [], time.perf_counter() + box["sweep"]
    for n in s["seeds"]:
        left = deadline - time.perf_counter()
        if left < 5:
            r.status.append({"part": f"sweep {n}", "state": "not started (the sweep's time was spent)", "seconds": 0})
            continue
        sweep += r.part("sweep", str(n), left)
    result["sweep"] = sweep
    sac = next((h for h in result["headline"] if h["agent"] == "sac"), None)
    steps = short_run_steps(sac, s)
    run_dir = os.path.join(work, "runs", "check-sac")
    cmd = [sys.executable, "-m", "mjxflow.train", "--env", s["env"], "--num-envs", str(s["num_envs"]), "--agent", "sac",
           "--total-steps", str(steps), "--runs-dir", os.path.join(work, "runs"), "--run-name", "check-sac",
           "--compile-cache", os.path.join(work, "jax-cache")]
    t = time.perf_counter()
    _, _, rc = r.run("run", cmd, box["run"])
    run = {"env": s["env"], "num_envs": s["num_envs"], "total_steps": steps, "seconds": time.perf_counter() - t,
           "sized_from_headline": sac is not None}
    if os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
        run["final_returns"] = final_returns(run_dir)
    if os.path.exists(os.path.join(run_dir, "curve.png")):
        shutil.copy(os.path.join(run_dir, "curve.png"), os.path.join(out, "curve.png"))
    result["run"] = run
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", "-o", "addopts=", "-p", "no:cacheprovider", *TESTS]
    _, text, rc = r.run("tests", cmd, box["tests"])
    result["tests"] = {"selected": TESTS, "summary": next((l for l in reversed(text.splitlines()) if " in " in l and
                                                           ("passed" in l or "failed" in l or "error" in l)), ""), "ok": rc == 0}
    result["parts"] = r.status
    result["seconds"] = time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(report(result))
    r.say(report(result))
    r.say(f"check: {result['seconds']:.0f} s; wrote {out}/results.json, results.md, log.txt" +
          (", curve.png" if os.path.exists(os.path.join(out, "curve.png")) else ""))
    return 0 if all(p["state"] == "ok" for p in r.status) else 1


def report(res: dict) -> str:
    from mjxflow.bench import headline_table, md_table, sweep_table

    d = res.get("device") or {}
    mem = f", {d['memory_bytes'] / 2**30:.1f} GiB" if d.get("memory_bytes") else ""
    lines = [f"# mjxflow GPU check{' (smoke sizes)' if res['smoke'] else ''}, {res['started']}", "",
             f"Device: {d.get('backend', '?')} {d.get('device', '?')} x {d.get('device_count', '?')}{mem}; "
             f"jax {d.get('jax', '?')}; whole check {res['seconds']:.0f} s.", "",
             md_table(["package", "version", "range"], [[v["name"], v["version"] or f"- ({v['note']})", v["range"]]
                                                        for v in res["versions"]]), ""]
    if res["headline"]:
        lines += [f"## Headline config ({res['sizes']['env']}, {res['sizes']['num_envs']} envs, as train resolves it)", "",
                  headline_table(res["headline"]), "",
                  md_table(["agent", "compile + warm-up (s)"], [[h["agent"], f"{h['compile_s']:.1f}"] for h in res["headline"]]), ""]
    if res["physics"]:
        lines += ["## Raw MJX stepping (random actions, one jitted scan)", "",
                  md_table(["env", "envs", "env steps/s"], [[p["env"], p["num_envs"], f"{p['env_steps_per_s']:,.0f}"]
                                                           for p in res["physics"]]), ""]
    if res["sweep"]:
        lines += [f"## Seed sweep on one device (SAC, {res['sizes']['num_envs']} envs per seed)", "", sweep_table(res["sweep"]), ""]
    run = res["run"]
    rets = ", ".join(f"{x:.1f}" for x in run.get("final_returns", [])) or "-"
    lines += ["## A short headline SAC run", "",
              md_table(["env", "envs", "env steps per seed", "sized from (b)", "whole command (s)", "final eval return per seed"],
                       [[run["env"], run["num_envs"], f"{run['total_steps']:,}", "yes" if run["sized_from_headline"] else "no (20 iterations)",
                         f"{run['seconds']:.0f}", rets]]), "",
              f"Tests: {res['tests']['summary'] or '-'}", "",
              "## Parts", "", md_table(["part", "state", "seconds"], [[p["part"], p["state"], p["seconds"]] for p in res["parts"]]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", help="folder for results.json, results.md, curve.png and log.txt")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, to test the check on a CPU")
    p.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    p.add_argument("--arg", default="", help=argparse.SUPPRESS)
    p.add_argument("--work", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.part:
        s = sizes(a.smoke)
        fn = PARTS[a.part]
        fn(s, a.arg) if a.part == "device" else fn(s, a.arg, a.work)
        return 0
    if not a.out:
        p.error("give OUT_DIR")
    return check(a.out, a.smoke)


if __name__ == "__main__":
    sys.exit(main())
