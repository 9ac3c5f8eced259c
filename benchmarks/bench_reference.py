#!/usr/bin/env python3
"""horde's ``MultiHeadMLPLearner`` against the reference implementation on identical work.

The reference is ``alberta-framework`` 0.17.1 (PyPI), whose ``MultiHeadMLPLearner`` has the same
public API. It needs Python >= 3.13, so it runs in its own virtual environment
(``.venv-reference/`` at the repository root, not committed); horde runs with the interpreter
that runs this script.

Usage::

    python benchmarks/bench_reference.py --setup             # create / update .venv-reference, exit
    python benchmarks/bench_reference.py                     # sizes 8 64 256 (creates the venv if missing)
    python benchmarks/bench_reference.py --runs 3            # median of 3 fresh subprocesses per cell
    python benchmarks/bench_reference.py --heads 64 1024 --timeout 600
    python benchmarks/bench_reference.py --json out.json

Set-up for both implementations and every size: ``MultiHeadMLPLearner(n_heads,
hidden_sizes=(128, 128), optimizer=LMS(0.01), bounder=ObGDBounding())``, ``init(16, key)``,
standard-normal observations and targets drawn with NumPy from the same seed in each subprocess,
about 25% of the targets NaN (inactive heads) at each step.

Every (implementation, size) runs in a fresh subprocess (this script with the hidden
``--worker`` flag: the reference inside the venv's Python, horde with this interpreter). The
subprocess prints one line per finished measurement; when a measurement takes longer than
``--timeout`` seconds the subprocess is killed and the cell reads ``timeout`` (the reference's
compile time grows steeply with the number of heads). See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_model, usable_cores  # noqa: E402

REFERENCE_PACKAGE = "alberta-framework==0.17.1"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_VENV = os.path.join(REPO_ROOT, ".venv-reference")
DEFAULT_HEADS = (8, 64, 256)
FEATURE_DIM = 16
HIDDEN_SIZES = (128, 128)
STEP_SIZE = 0.01
INACTIVE_FRACTION = 0.25
SEED = 0
SHORT_STEPS = 64  # stream of the scan compile measurement (first and second public call)
DEFAULT_SCAN_STEPS = 2000  # stream of the steady scan measurement
MAX_STREAM_ELEMENTS = 24_000_000  # cap on scan_steps * n_heads (targets + returned metrics)
POOL = 256  # (observation, targets) pairs cycled through by the single-step measurement
WARM_CALLS = 20
MIN_UPDATE_CALLS = 50
MAX_UPDATE_CALLS = 2000
UPDATE_TIME_BUDGET_S = 1.0
MARK_START = "BENCH_START "
MARK_DONE = "BENCH_DONE "
IMPLS = ("reference", "horde")


# ============================================================================================
# Worker: one implementation, one size, in this process. Runs under Python 3.11 (horde) and
# 3.13 (reference venv); imports only what the chosen implementation needs.


def _emit(marker: str, payload) -> None:
    print(marker + json.dumps(payload), flush=True)


def _env_info(impl: str) -> dict:
    import jax
    import jaxlib
    import numpy as np

    info = {
        "impl": impl,
        "python": platform.python_version(),
        "executable": sys.executable,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
    }
    try:
        info["async_dispatch"] = bool(jax.config.read("jax_cpu_enable_async_dispatch"))
    except Exception:  # noqa: BLE001 - flag absent in other jax versions
        info["async_dispatch"] = None
    if impl == "reference":
        import alberta_framework

        info["package"] = f"alberta-framework {alberta_framework.__version__}"
    else:
        import horde

        info["package"] = f"horde {horde.__version__}"
    return info


def _peak_rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stream(rng, n_steps: int, n_heads: int):
    import numpy as np

    obs = rng.standard_normal((n_steps, FEATURE_DIM)).astype(np.float32)
    tgt = rng.standard_normal((n_steps, n_heads)).astype(np.float32)
    tgt[rng.random((n_steps, n_heads)) < INACTIVE_FRACTION] = np.nan
    return obs, tgt


def _api(impl: str, n_heads: int):
    """``(learner, scan_public, scan_steady)`` of one implementation.

    ``scan_public(state, obs, tgt)`` is the public ``run_multi_head_learning_loop`` call as a user
    makes it. ``scan_steady`` is what the steady per-step time is measured with: the public call
    for horde (compiled once per stream shape), and for the reference the public call wrapped in
    ``jax.jit`` by the caller, because the reference's function is not compiled as a whole: it
    calls ``jax.lax.scan`` on a fresh closure, so every call traces and compiles again.
    """
    import jax

    if impl == "reference":
        import alberta_framework as af

        learner = af.MultiHeadMLPLearner(
            n_heads, hidden_sizes=HIDDEN_SIZES, optimizer=af.LMS(STEP_SIZE), bounder=af.ObGDBounding()
        )
        run = af.run_multi_head_learning_loop
        steady = jax.jit(lambda s, o, t: run(learner, s, o, t))
    else:
        import horde

        learner = horde.MultiHeadMLPLearner(
            n_heads, hidden_sizes=HIDDEN_SIZES, optimizer=horde.LMS(STEP_SIZE), bounder=horde.ObGDBounding()
        )
        run = horde.run_multi_head_learning_loop
        steady = lambda s, o, t: run(learner, s, o, t)  # noqa: E731
    return learner, (lambda s, o, t: run(learner, s, o, t)), steady


def _timed(fn):
    import jax

    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return out, time.perf_counter() - t0


def worker(impl: str, n_heads: int, scan_steps: int, repeats: int) -> None:
    import jax
    import numpy as np

    _emit(MARK_DONE, {"name": "info", **_env_info(impl)})

    # XLA's one-time per-process start-up cost, paid on an unrelated function.
    warm = jax.jit(lambda w, x: jax.nn.leaky_relu(jax.numpy.tanh(x @ w).sum(0)))
    warm(jax.numpy.ones((16, 16)), jax.numpy.ones((4, 16))).block_until_ready()

    rng = np.random.default_rng(SEED)
    obs_pool, tgt_pool = _stream(rng, POOL, n_heads)
    obs_s, tgt_s = _stream(rng, SHORT_STEPS, n_heads)
    obs_l, tgt_l = _stream(rng, scan_steps, n_heads)

    # ---- init
    _emit(MARK_START, "init")
    learner, scan_public, scan_steady = _api(impl, n_heads)
    state, init_s = _timed(lambda: learner.init(FEATURE_DIM, jax.random.key(SEED)))
    leaves = jax.tree_util.tree_leaves(state)
    _emit(
        MARK_DONE,
        {
            "name": "init",
            "init_s": init_s,
            "state_bytes": int(sum(getattr(x, "nbytes", 0) for x in leaves)),
            "state_leaves": len(leaves),
        },
    )

    # ---- single-step update, daemon style: NumPy in, block on predictions, state fed forward
    def step(s, i):
        res = learner.update(s, obs_pool[i % POOL], tgt_pool[i % POOL])
        res.predictions.block_until_ready()
        return res.state

    _emit(MARK_START, "update_compile")
    t0 = time.perf_counter()
    state = step(state, 0)
    first_s = time.perf_counter() - t0
    _emit(MARK_DONE, {"name": "update_compile", "update_first_call_s": first_s})

    _emit(MARK_START, "update_steady")
    warm_t = []
    for i in range(1, 1 + WARM_CALLS):
        t0 = time.perf_counter()
        state = step(state, i)
        warm_t.append(time.perf_counter() - t0)
    n_calls = int(UPDATE_TIME_BUDGET_S / max(statistics.median(warm_t), 1e-9))
    n_calls = max(MIN_UPDATE_CALLS, min(MAX_UPDATE_CALLS, n_calls))
    times = []
    for i in range(n_calls):
        t0 = time.perf_counter()
        state = step(state, 1 + WARM_CALLS + i)
        times.append(time.perf_counter() - t0)
    q = statistics.quantiles(times, n=10)
    median_s = statistics.median(times)
    _emit(
        MARK_DONE,
        {
            "name": "update_steady",
            "update_median_s": median_s,
            "update_p10_s": q[0],
            "update_p90_s": q[-1],
            "update_calls": n_calls,
            "update_compile_s": first_s - median_s,
        },
    )

    # ---- scan: public call on a short stream (first call: compile), then again (same shape)
    obs_s, tgt_s = jax.device_put(obs_s), jax.device_put(tgt_s)
    _emit(MARK_START, "scan_first")
    res, t_first = _timed(lambda: scan_public(state, obs_s, tgt_s))
    _emit(MARK_DONE, {"name": "scan_first", "scan_short_steps": SHORT_STEPS, "scan_short_first_call_s": t_first})
    _emit(MARK_START, "scan_second")
    res, t_second = _timed(lambda: scan_public(res.state, obs_s, tgt_s))
    _emit(MARK_DONE, {"name": "scan_second", "scan_short_second_call_s": t_second})

    # ---- steady scan on a long stream already on the device, state fed forward
    obs_l, tgt_l = jax.device_put(obs_l), jax.device_put(tgt_l)
    _emit(MARK_START, "scan_steady")
    res, long_first_s = _timed(lambda: scan_steady(state, obs_l, tgt_l))
    steady = []
    for _ in range(repeats):
        res, t = _timed(lambda: scan_steady(res.state, obs_l, tgt_l))
        steady.append(t)
    metrics = np.asarray(res.per_head_metrics)
    active = ~np.isnan(metrics[..., 1])
    per_step = min(steady) / scan_steps
    _emit(
        MARK_DONE,
        {
            "name": "scan_steady",
            "scan_steps": scan_steps,
            "scan_steady_how": "jax.jit(public call)" if impl == "reference" else "public call",
            "scan_long_first_call_s": long_first_s,
            "scan_steady_calls_s": steady,
            "scan_per_step_s": per_step,
            "scan_compile_s": t_first - SHORT_STEPS * per_step,
            "active_fraction": float(active.mean()),
            "finite_errors_fraction": float(np.isfinite(metrics[..., 1][active]).mean()),
            "peak_rss_mib": _peak_rss_mib(),
        },
    )


# ============================================================================================
# Reference environment


def _is_python313(cand: str) -> bool:
    """True when ``cand`` runs and is Python >= 3.13 (a pyenv shim for an inactive version fails)."""
    try:
        r = subprocess.run(
            [cand, "-c", "import sys; sys.exit(0 if sys.version_info >= (3, 13) else 1)"],
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _find_python313(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(os.path.join(pyenv, "versions", "3.1[3-9]*", "bin", "python3.1[3-9]")))
    candidates += [found for name in ("python3.13", "python3.14") if (found := shutil.which(name))]
    for cand in candidates:
        if _is_python313(cand):
            return cand
    return None


def _venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def _probe_reference(python: str) -> dict | None:
    """Versions in the reference environment, or None when alberta_framework does not import."""
    code = (
        "import json, platform, jax, jaxlib, numpy, alberta_framework as af;"
        "print(json.dumps({'python': platform.python_version(), 'jax': jax.__version__,"
        " 'jaxlib': jaxlib.__version__, 'numpy': numpy.__version__, 'package': af.__version__}))"
    )
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _local_jax_version() -> tuple[str, str] | None:
    try:
        from importlib.metadata import version

        return version("jax"), version("jaxlib")
    except Exception:  # noqa: BLE001
        return None


def setup_reference(venv: str, python313: str | None, jax_pin: str) -> tuple[str | None, str]:
    try:
        return _setup_reference(venv, python313, jax_pin)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"setting up {venv} failed: {exc}"


def _setup_reference(venv: str, python313: str | None, jax_pin: str) -> tuple[str | None, str]:
    """Creates ``venv`` if missing and installs the reference into it.

    ``jax_pin``: ``match`` pins jax/jaxlib to this interpreter's versions (same XLA for both
    implementations; falls back to unpinned when that cannot be installed), ``latest`` lets pip
    choose, anything else is a version pinned for both jax and jaxlib.
    Returns ``(python or None, message)``.
    """
    if not os.path.exists(_venv_python(venv)):
        py = _find_python313(python313)
        if py is None or not _is_python313(py):
            return (
                None,
                f"no working Python >= 3.13 found ({python313 or 'searched pyenv and PATH'}; give one with --python313)",
            )
        print(f"[setup] creating {venv} with {py}", flush=True)
        r = subprocess.run([py, "-m", "venv", venv])
        if r.returncode != 0:
            return None, f"'{py} -m venv {venv}' failed"
    vpy = _venv_python(venv)
    pins: list[str] = []
    if jax_pin == "match":
        local = _local_jax_version()
        if local:
            pins = [f"jax=={local[0]}", f"jaxlib=={local[1]}"]
    elif jax_pin != "latest":
        pins = [f"jax=={jax_pin}", f"jaxlib=={jax_pin}"]
    attempts = [pins, []] if pins else [[]]
    for extra in attempts:
        cmd = [vpy, "-m", "pip", "install", "--disable-pip-version-check", REFERENCE_PACKAGE, *extra]
        print("[setup] " + " ".join(cmd[2:]), flush=True)
        r = subprocess.run(cmd)
        if r.returncode == 0:
            break
        print(f"[setup] pip install {' '.join(extra) or '(unpinned)'} failed", flush=True)
    info = _probe_reference(vpy)
    if info is None:
        return None, f"alberta_framework does not import in {venv}"
    return vpy, (
        f"reference ready: Python {info['python']}, alberta-framework {info['package']}, "
        f"jax {info['jax']}, jaxlib {info['jaxlib']}"
    )


# ============================================================================================
# Driver


def _reader(stream, q: queue.Queue) -> None:
    for line in stream:
        q.put(line)
    q.put(None)


def run_worker(cmd: list[str], timeout: float) -> tuple[dict, str | None, str]:
    """Runs one worker; returns ``(merged measurements, timed-out measurement or None, stderr tail)``.

    Each measurement must finish within ``timeout`` seconds of the previous one's end; else the
    worker (its whole process group) is killed.
    """
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=REPO_ROOT
    )
    q: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, q), daemon=True).start()
    err_lines: list[str] = []

    def _drain_err():
        for line in proc.stderr:
            err_lines.append(line)
            del err_lines[:-40]

    err_thread = threading.Thread(target=_drain_err, daemon=True)
    err_thread.start()
    row: dict = {"done": []}
    current = "start-up"
    deadline = time.monotonic() + timeout
    timed_out = None
    while True:
        try:
            line = q.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            timed_out = current
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        if line is None:
            break
        if line.startswith(MARK_START):
            current = json.loads(line[len(MARK_START) :])
        elif line.startswith(MARK_DONE):
            payload = json.loads(line[len(MARK_DONE) :])
            name = payload.pop("name")
            row["done"].append(name)
            if name == "info":
                row["info"] = payload
            else:
                row.update(payload)
            deadline = time.monotonic() + timeout
    proc.wait()
    err_thread.join(timeout=5)
    row["returncode"] = proc.returncode
    return row, timed_out, "".join(err_lines[-15:])


def machine_header() -> list[str]:
    return [
        f"CPU: {cpu_model()}; {os.cpu_count()} cores ({usable_cores()} usable); {platform.system()} {platform.release()}"
    ]


# column key, header, formatter
COLUMNS = (
    ("update_compile_s", "update compile (s)", lambda v: f"{v:.2f}"),
    ("update_median_s", "update µs (median)", lambda v: f"{v * 1e6:.0f}"),
    ("scan_compile_s", "scan compile (s)", lambda v: f"{v:.2f}"),
    ("scan_short_second_call_s", f"scan 2nd call, {SHORT_STEPS} steps (ms)", lambda v: f"{v * 1e3:.1f}"),
    ("scan_per_step_s", "scan µs/step", lambda v: f"{v * 1e6:.1f}"),
    ("peak_rss_mib", "peak RSS (MiB)", lambda v: f"{v:.0f}"),
)
# the measurement (worker phase) that produces each column
COLUMN_PHASE = {
    "update_compile_s": "update_compile",
    "update_median_s": "update_steady",
    "scan_compile_s": "scan_first",
    "scan_short_second_call_s": "scan_second",
    "scan_per_step_s": "scan_steady",
    "peak_rss_mib": "scan_steady",
}
PHASES = ("init", "update_compile", "update_steady", "scan_first", "scan_second", "scan_steady")


def _cell(row: dict | None, key: str, fmt) -> str:
    if row is None:
        return "n/a"
    if key in row:
        return fmt(row[key])
    # a compile column whose subtraction needs a later measurement: the raw first call, marked
    raw = {"update_compile_s": "update_first_call_s", "scan_compile_s": "scan_short_first_call_s"}.get(key)
    if raw and raw in row:
        return fmt(row[raw]) + " (1st call)"
    phase = COLUMN_PHASE[key]
    timed_out = row.get("timed_out")
    if timed_out:
        if PHASES.index(timed_out if timed_out in PHASES else "init") <= PHASES.index(phase):
            return f"timeout (>{row['timeout_s']:.0f} s)" if timed_out == phase else "—"
    return "error"


def render_table(results: dict) -> str:
    head = ["n_heads", "implementation"] + [h for _, h, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|"]
    for n, per_impl in results.items():
        ref, hor = per_impl.get("reference"), per_impl.get("horde")
        for name, row in (("reference", ref), ("horde", hor)):
            lines.append("| " + " | ".join([str(n), name] + [_cell(row, k, f) for k, _, f in COLUMNS]) + " |")
        ratio = []
        for key, _, _ in COLUMNS:
            a = ref.get(key) if ref else None
            b = hor.get(key) if hor else None
            ratio.append(f"**{a / b:.1f}×**" if a is not None and b not in (None, 0) and b > 0 else "—")
        lines.append("| " + " | ".join([str(n), "ratio ref / horde"] + ratio) + " |")
    return "\n".join(lines)


def _combine(rows: list[dict]) -> dict:
    """One row from several runs: the median of every numeric column key present in any run."""
    out = dict(rows[0])
    out["timed_out"] = next((r["timed_out"] for r in rows if r["timed_out"]), None)
    keys = {k for r in rows for k in r}
    for key in keys:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        if values and key not in ("n_heads", "run", "returncode", "timeout_s"):
            out[key] = statistics.median(values)
    out["runs_combined"] = len(rows)
    return out


def _steps_text(args) -> str:
    lengths = sorted({max(1, min(args.scan_steps, MAX_STREAM_ELEMENTS // n)) for n in args.heads})
    return str(lengths[0]) if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setup", action="store_true", help="create/update the reference venv and exit")
    p.add_argument("--heads", type=int, nargs="+", default=list(DEFAULT_HEADS), help="sizes (default 8 64 256)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per measurement (default 300)")
    p.add_argument(
        "--scan-steps",
        type=int,
        default=DEFAULT_SCAN_STEPS,
        help=f"stream length of the steady scan measurement, both implementations (default {DEFAULT_SCAN_STEPS})",
    )
    p.add_argument("--repeats", type=int, default=3, help="steady scan calls timed; the fastest counts (default 3)")
    p.add_argument(
        "--runs",
        type=int,
        default=1,
        help="fresh subprocesses per implementation and size; the table shows the median of each column (default 1)",
    )
    p.add_argument("--only", choices=("both", *IMPLS), default="both", help="run one implementation only")
    p.add_argument("--venv", default=DEFAULT_VENV, help="reference venv (default: .venv-reference/ at the repo root)")
    p.add_argument("--python313", default=None, help="Python >= 3.13 used to create the venv (default: searched)")
    p.add_argument(
        "--reference-jax",
        default="match",
        help="jax/jaxlib in the reference venv at setup: 'match' this interpreter's (default), 'latest', or a version",
    )
    p.add_argument(
        "--reference-python", default=None, help="use this Python (with alberta-framework) instead of the venv"
    )
    p.add_argument("--json", metavar="OUT", default=None, help="write header info and all raw rows to OUT")
    p.add_argument("--worker", choices=IMPLS, default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        worker(args.worker, args.n, args.scan_steps, args.repeats)
        return 0

    # ---- reference environment
    ref_python, ref_msg = None, "not requested (--only horde)"
    if args.setup:
        ref_python, ref_msg = setup_reference(args.venv, args.python313, args.reference_jax)
        print(ref_msg)
        return 0 if ref_python else 1
    if args.only != "horde":
        if args.reference_python:
            ref_python = args.reference_python
            ref_msg = f"reference from --reference-python {ref_python}"
        elif os.path.exists(_venv_python(args.venv)) and _probe_reference(_venv_python(args.venv)):
            ref_python = _venv_python(args.venv)
            ref_msg = f"reference from {args.venv}"
        else:
            print(
                f"[setup] {args.venv} missing or incomplete: setting it up (python benchmarks/bench_reference.py --setup)"
            )
            ref_python, ref_msg = setup_reference(args.venv, args.python313, args.reference_jax)
        if ref_python is None:
            print(f"WARNING: the reference implementation is unavailable ({ref_msg}); its columns are skipped.")

    pythons = {"horde": sys.executable if args.only != "reference" else None, "reference": ref_python}
    load_before = os.getloadavg()[0]
    results: dict[int, dict] = {}
    infos: dict[str, dict] = {}
    t_start = time.perf_counter()
    raw_rows: list[dict] = []
    for n in args.heads:
        steps = max(1, min(args.scan_steps, MAX_STREAM_ELEMENTS // n))  # same for both implementations
        results[n] = {}
        runs: dict[str, list[dict]] = {impl: [] for impl in IMPLS}
        for run_i in range(args.runs):
            # per size and run: reference, then horde, so that drifting load hits both alike
            for impl in IMPLS:
                if pythons[impl] is None or any(r["timed_out"] for r in runs[impl]):
                    continue
                cmd = [
                    pythons[impl],
                    os.path.abspath(__file__),
                    "--worker",
                    impl,
                    "--n",
                    str(n),
                    "--scan-steps",
                    str(steps),
                    "--repeats",
                    str(args.repeats),
                ]
                t0 = time.perf_counter()
                row, timed_out, err = run_worker(cmd, args.timeout)
                wall = time.perf_counter() - t0
                if row.get("info"):
                    infos.setdefault(impl, row["info"])
                row.update(
                    {"n_heads": n, "run": run_i, "wall_s": wall, "timed_out": timed_out, "timeout_s": args.timeout}
                )
                status = f"timeout in '{timed_out}'" if timed_out else ("ok" if row["returncode"] == 0 else "FAILED")
                print(f"[{impl:9s} n_heads={n:>5} run {run_i + 1}] {status}, {wall:.0f} s", file=sys.stderr, flush=True)
                if not timed_out and row["returncode"] != 0:
                    print(err, file=sys.stderr)
                runs[impl].append(row)
                raw_rows.append(row)
        for impl in IMPLS:
            results[n][impl] = _combine(runs[impl]) if runs[impl] else None
    total_s = time.perf_counter() - t_start
    load_after = os.getloadavg()[0]

    print()
    for line in machine_header():
        print(line)
    for impl in IMPLS:
        i = infos.get(impl)
        if i:
            print(
                f"{impl}: {i.get('package')}; Python {i.get('python')}; jax {i.get('jax')}, jaxlib {i.get('jaxlib')}, "
                f"numpy {i.get('numpy')}; backend {i.get('backend')}; async dispatch {i.get('async_dispatch')}"
            )
        elif impl == "reference":
            print(f"reference: unavailable — {ref_msg}")
    if infos.get("reference") and infos.get("horde") and infos["reference"].get("jax") != infos["horde"].get("jax"):
        print("NOTE: different jax versions in the two environments (re-pin with --setup --reference-jax match)")
    print(
        f"Set-up: trunk {HIDDEN_SIZES}, {FEATURE_DIM} features, LMS({STEP_SIZE}) + ObGDBounding(), "
        f"~{INACTIVE_FRACTION:.0%} NaN targets; scan compile on {SHORT_STEPS} steps, steady scan on "
        f"{_steps_text(args)} steps (fastest of "
        f"{args.repeats}); timeout {args.timeout:.0f} s per measurement; "
        + (f"median of {args.runs} fresh subprocesses per cell" if args.runs > 1 else "one subprocess per cell")
    )
    print(f"Load average (1 min) before: {load_before:.2f}, after: {load_after:.2f}; total {total_s:.0f} s")
    print()
    print(render_table(results))

    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": machine_header(),
                    "environments": infos,
                    "reference_message": ref_msg,
                    "load_before": load_before,
                    "load_after": load_after,
                    "total_s": total_s,
                    "runs": args.runs,
                    "rows": raw_rows,
                    "combined_rows": [r for per in results.values() for r in per.values() if r],
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
