"""What the harness costs on top of the model: a benchmark script, not a test.

    python benchmarks/overhead.py                    # overhead table, 5 interleaved rounds
    python benchmarks/overhead.py --rounds 9 --sweep 1,4,8,16,32
    python benchmarks/overhead.py --before /tmp/before     # a checkout of main, measured in the same rounds
    python benchmarks/overhead.py --llama-url http://127.0.0.1:8080/v1   # cache share on a real llama-server

It starts the instant stub (`benchmarks/stub.py`, TCP_NODELAY, keep-alive), runs `python -m harness run`
on the built-in suite, then a bare `openai` loop sending the very same request bodies one after the
other, alternating which goes first in each round. Times come from the stub (first chat request in,
last reply out) and from the parent (process start, exit, `wait4` peak RSS), so both sides are measured
the same way. Every figure is printed as min / median / max over the rounds, and the per-call overhead
is the paired difference within a round. The harness runs with its scenario load cache filled by the
warm-up run, as a user's second run finds it; one more run per round, killed at its first request, has
the cache off (the first run after the scenario files changed). The sweep runs the stub with 0.2 s
per reply and compares the harness's throughput with the ideal schedule of the same scenarios on C slots.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
# bytecode cached as a user's install has it (PYTHONDONTWRITEBYTECODE would recompile every module
# at every start), kept outside the tree
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "harness-bench-pycache")
# the scenario files' load cache likewise: filled by the warm-up run, as a user's second run finds it
ENV["HARNESS_SCENARIO_CACHE"] = str(Path(tempfile.gettempdir()) / "harness-bench-scenario-cache")


# -- the stub ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stub:
    """The stub in its own process (so it does not share this one's GIL)."""

    def __init__(self, latency: float = 0.0):
        self.port = _free_port()
        self.proc = subprocess.Popen([PY, str(ROOT / "benchmarks" / "stub.py"), "--port", str(self.port),
                                      "--latency", str(latency)], env=ENV)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("stub did not start")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as resp:
            return json.loads(resp.read())

    def reset(self) -> None:
        self._get("/_reset")

    def stats(self) -> dict[str, Any]:
        return self._get("/_stats")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- one measured process -----------------------------------------------------------------------------


def _measure(cmd: list[str], stub: Stub | None, *, cwd: Path = ROOT) -> dict[str, Any]:
    """Run `cmd`, return wall time, peak RSS, and (with a stub) time to first request and the request span."""
    if stub is not None:
        stub.reset()
    started = time.monotonic()
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errfile, env=ENV)
        # resident memory over time, to tell the run's requests from the reports drawn after them
        stop = threading.Event()
        sampler = threading.Thread(target=_sample_rss, args=(proc.pid, samples, stop), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        ended = time.monotonic()
        stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        errfile.seek(0)
        err = errfile.read().decode(errors="replace")
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-2000:]}")
    out: dict[str, Any] = {"wall_s": ended - started, "rss_mb": usage.ru_maxrss / 1024}
    if stub is not None:
        st = stub.stats()
        out.update(n=st["n"], first_request_s=(st["first"] or ended) - started,
                   span_s=(st["last"] or ended) - (st["first"] or ended), max_inflight=st["max_inflight"])
        last = st["last"] or ended
        out["rss_requests_mb"] = max((mb for t, mb in samples if t <= last), default=float("nan"))
    return out


def _sample_rss(pid: int, samples: list[tuple[float, float]], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        samples.append((time.monotonic(), int(line.split()[1]) / 1024))
                        break
        except OSError:
            return
        stop.wait(0.02)


def _harness_cmd(stub: Stub, out_dir: Path, *extra: str) -> list[str]:
    return [PY, "-m", "harness", "run", "--base-url", stub.base_url, "--model", "stub", "--no-preflight",
            "--out", str(out_dir), "--json", *extra]


def _bodies(results: Path) -> list[dict[str, Any]]:
    """Every request body the harness sent, in order, from its results file."""
    bodies = []
    for line in results.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "result":
            bodies += [s["reply"]["request"] for s in rec["trajectory"]["steps"]]
    return bodies


def _bare(bodies_file: str, base_url: str) -> None:
    """The floor: the same requests through the openai SDK, one after the other, nothing else."""
    import openai

    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-none", max_retries=0)
        with open(bodies_file) as fh:
            bodies = [json.loads(line) for line in fh]
        for body in bodies:
            await client.chat.completions.create(**body)
        await client.close()

    asyncio.run(go())


def _stats(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "-"
    lo, med, hi = min(values), statistics.median(values), max(values)
    return f"{fmt.format(med)} ({fmt.format(lo)}-{fmt.format(hi)})"


def _first_request_only(cmd: list[str], stub: Stub, *, cwd: Path, env: dict[str, str]) -> float:
    """Seconds from spawning `cmd` to its first chat request at the stub; the process is killed then."""
    stub.reset()
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        while True:
            first = stub.stats()["first"]
            if first:
                return first - started
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode} before its first request")
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait()


# -- the table ----------------------------------------------------------------------------------------


def overhead(rounds: int, extra: list[str], before: Path | None = None) -> None:
    """The table; with `before` (another checkout, e.g. `git worktree add /tmp/before main`), that tree's
    harness runs in the same rounds too, so before and after see the same machine load."""
    stub = Stub()
    tmp = Path(tempfile.mkdtemp(prefix="harness-bench-"))
    trees = {"harness": ROOT, **({"before": before} if before else {})}
    keys = ("per_call_ms", "help_s", "ttfr_s", "ttfr_cold_s", "rss_mb", "rss_requests_mb", "run_wall_s", "validate_s", "list_s")
    rows: dict[str, dict[str, list[float]]] = {t: {k: [] for k in keys} for t in trees}
    floor: dict[str, list[float]] = {k: [] for k in ("floor_ms", "import_openai_s", "ttfr_s", "rss_mb", "rss_requests_mb", "wall_s")}
    try:
        # the requests the bare loop replays: what the harness itself sent
        first = _measure(_harness_cmd(stub, tmp / "warm", *extra), stub)
        for name, tree in trees.items():  # warm every tree's bytecode cache
            _measure(_harness_cmd(stub, tmp / f"warm-{name}", *extra), stub, cwd=tree)
        bodies = _bodies(tmp / "warm" / "results.jsonl")
        bodies_file = tmp / "bodies.jsonl"
        bodies_file.write_text("".join(json.dumps(b) + "\n" for b in bodies))
        n = len(bodies)
        print(f"{n} chat calls per run (warm-up run {first['wall_s']:.1f} s); {rounds} rounds, interleaved\n", file=sys.stderr)
        bare_cmd = [PY, str(Path(__file__).resolve()), "--bare", str(bodies_file), "--base-url", stub.base_url]
        for r in range(rounds):
            jobs: list[tuple[str, Any]] = [("bare", lambda: _measure(bare_cmd, stub))]
            jobs += [(name, lambda r=r, name=name, tree=tree: _measure(_harness_cmd(stub, tmp / f"{name}-r{r}", *extra), stub, cwd=tree))
                     for name, tree in trees.items()]
            # rotate who goes first, round by round
            jobs = jobs[r % len(jobs):] + jobs[: r % len(jobs)]
            got = {k: fn() for k, fn in jobs}
            b = got["bare"]
            floor["floor_ms"].append(b["span_s"] / n * 1000)
            floor["ttfr_s"].append(b["first_request_s"])
            floor["rss_mb"].append(b["rss_mb"])
            floor["rss_requests_mb"].append(b["rss_requests_mb"])
            floor["wall_s"].append(b["wall_s"])
            floor["import_openai_s"].append(_measure([PY, "-c", "import openai"], None)["wall_s"])
            for name, tree in trees.items():
                h = got[name]
                if h["n"] != n or b["n"] != n:
                    print(f"round {r}: call counts differ ({name} {h['n']}, bare {b['n']}, expected {n})", file=sys.stderr)
                row = rows[name]
                row["per_call_ms"].append((h["span_s"] - b["span_s"]) / n * 1000)
                row["ttfr_s"].append(h["first_request_s"])
                row["rss_mb"].append(h["rss_mb"])
                row["rss_requests_mb"].append(h["rss_requests_mb"])
                row["run_wall_s"].append(h["wall_s"])
                # process start-up, interleaved the same way
                row["help_s"].append(_measure([PY, "-m", "harness", "--help"], None, cwd=tree)["wall_s"])
                row["validate_s"].append(_measure([PY, "-m", "harness", "validate"], None, cwd=tree)["wall_s"])
                row["list_s"].append(_measure([PY, "-m", "harness", "list"], None, cwd=tree)["wall_s"])
                # the first run after the scenario files changed: every file parsed and validated again
                row["ttfr_cold_s"].append(_first_request_only(_harness_cmd(stub, tmp / f"{name}-cold-r{r}", *extra), stub, cwd=tree,
                                                              env={**ENV, "HARNESS_SCENARIO_CACHE": "off"}))
                print(f"round {r + 1}/{rounds} {name}: {row['per_call_ms'][-1]:+.2f} ms/call, help {row['help_s'][-1]:.2f} s, "
                      f"first request {h['first_request_s']:.2f} s, rss {h['rss_mb']:.0f} MB", file=sys.stderr)
    finally:
        stub.close()
    print(f"\n{n} calls per run, {rounds} rounds; median (min-max); ratios are paired within a round\n")
    names = list(trees)
    print("| figure | " + " | ".join(names) + " | bare `openai` loop (floor) | " + " | ".join(f"{t} / floor" for t in names) + " |")
    print("|---" * (2 + 2 * len(names)) + "|")

    def line(label: str, key: str, unit: str, floor_key: str | None = None, fmt: str = "{:.2f}") -> None:
        cells = [f"{_stats(rows[t][key], fmt)} {unit}" for t in names]
        base = f"{_stats(floor[floor_key], fmt)} {unit}" if floor_key else ""
        ratios = [_stats([a / b for a, b in zip(rows[t][key], floor[floor_key])]) if floor_key else "" for t in names]
        print(f"| {label} | " + " | ".join(cells) + f" | {base} | " + " | ".join(ratios) + " |")

    cells = [f"{_stats(rows[t]['per_call_ms'], '{:+.2f}')} ms" for t in names]
    ratios = [_stats([1 + d / f for d, f in zip(rows[t]["per_call_ms"], floor["floor_ms"])]) for t in names]
    print("| overhead per model call over the floor | " + " | ".join(cells) + f" | {_stats(floor['floor_ms'])} ms/call | "
          + " | ".join(ratios) + " |")
    line("`harness --help`, whole process (floor: `import openai`)", "help_s", "s", "import_openai_s")
    line("`harness validate`, whole process", "validate_s", "s")
    line("`harness list`, whole process", "list_s", "s")
    line("time to first request in `run`", "ttfr_s", "s", "ttfr_s")
    line("the same, scenario files not in the load cache", "ttfr_cold_s", "s", "ttfr_s")
    line("whole `run` process (reports included)", "run_wall_s", "s", "wall_s")
    line("peak RSS while the requests run", "rss_requests_mb", "MB", "rss_requests_mb", fmt="{:.0f}")
    line("peak RSS, whole process (reports included)", "rss_mb", "MB", "rss_mb", fmt="{:.0f}")


# -- the concurrency sweep -----------------------------------------------------------------------------


def _ideal(results: Path, latency: float, slots: int) -> float:
    """The makespan of the run's scenarios on `slots` slots with zero overhead, in the harness's order."""
    header, calls = None, {}
    for line in results.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "header":
            header = rec
        elif rec.get("kind") == "result":
            calls[(rec["scenario_id"], rec["epoch"])] = len(rec["trajectory"]["steps"])
    assert header is not None
    order = [(sid, e) for e in range(header["config"]["epochs"]) for sid in header["config"]["scenario_ids"]]
    free = [0.0] * slots
    for key in order:
        start = heapq.heappop(free)
        heapq.heappush(free, start + calls[key] * latency)
    return max(free)


def sweep(levels: list[int], latency: float, rounds: int, extra: list[str], tree: Path = ROOT) -> None:
    from harness.scenario import load_scenarios

    ids = sorted(s.id for s in load_scenarios([str(ROOT / "scenarios")]))
    stub = Stub(latency=latency)
    tmp = Path(tempfile.mkdtemp(prefix="harness-sweep-"))
    got: dict[int, dict[str, list[float]]] = {c: {"ratio": [], "rss": [], "cps": [], "inflight": []} for c in levels}
    try:
        for r in range(rounds):
            for c in (levels if r % 2 == 0 else list(reversed(levels))):
                # enough scenario runs to keep every slot busy: 4 per slot
                want = 4 * c
                epochs = -(-want // len(ids))
                chosen = ids[: min(len(ids), want)]
                out = tmp / f"c{c}-r{r}"
                args = [a for sid in chosen for a in ("--id", sid)]
                m = _measure(_harness_cmd(stub, out, "--concurrency", str(c), "--epochs", str(epochs), *args, *extra), stub,
                             cwd=tree)
                ideal = _ideal(out / "results.jsonl", latency, c)
                got[c]["ratio"].append(ideal / m["span_s"])
                got[c]["rss"].append(m["rss_mb"])
                got[c]["cps"].append(m["n"] / m["span_s"])
                got[c]["inflight"].append(m["max_inflight"])
                print(f"round {r + 1}: C={c} {m['n']} calls in {m['span_s']:.2f} s (ideal {ideal:.2f} s) "
                      f"ratio {ideal / m['span_s']:.3f}, rss {m['rss_mb']:.0f} MB", file=sys.stderr)
    finally:
        stub.close()
    print(f"\nconcurrency sweep: stub answering after {latency:g} s, {rounds} round(s); median (min-max)\n")
    print("| C | throughput / ideal | calls/s | peak RSS MB | most requests in flight |")
    print("|---|---|---|---|---|")
    for c in levels:
        g = got[c]
        print(f"| {c} | {_stats(g['ratio'], '{:.3f}')} | {_stats(g['cps'], '{:.1f}')} | {_stats(g['rss'], '{:.0f}')} | "
              f"{_stats(g['inflight'], '{:.0f}')} |")


# -- the cache share on a real llama-server (not run by default) ---------------------------------------


def llama_cache_share(url: str, model: str, extra: list[str]) -> None:
    """Run the smoke suite against a running llama-server, one scenario at a time; print the share of prompt
    tokens served from its cache on steps >= 2, and where the wall time went: before the first scenario
    (start-up and the preflight's probes, which are model requests too), the scenarios themselves (model
    time and the harness's own time between and around requests), and after the last (reports)."""
    from datetime import datetime

    out = Path(tempfile.mkdtemp(prefix="harness-llama-"))
    cmd = [PY, "-m", "harness", "run", "--base-url", url, "--model", model, "--tag", "smoke", "--out", str(out),
           "--json", "--concurrency", "1", *extra]
    began = time.time()
    m = _measure(cmd, None)
    cached = fresh = 0
    model_ms = 0.0
    first = last = None
    for line in (out / "results.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") != "result":
            continue
        traj = rec["trajectory"]
        start = datetime.fromisoformat(traj["started_at"].replace("Z", "+00:00")).timestamp()
        first = start if first is None else min(first, start)
        last = max(last or 0.0, start + traj["duration_ms"] / 1000)
        for step in traj["steps"]:
            reply = step["reply"]
            model_ms += reply.get("latency_ms") or 0
            t = reply.get("timings") or {}
            if step["index"] >= 1 and t.get("cache_n") is not None:
                cached += t["cache_n"] or 0
                fresh += t.get("prompt_n") or 0
    share = cached / (cached + fresh) if cached + fresh else float("nan")
    span = (last or 0.0) - (first or 0.0)
    print(f"prompt tokens from llama-server's cache, steps >= 2: {share:.3f} ({cached} of {cached + fresh})")
    print(f"whole process {m['wall_s']:.1f} s: before the first scenario {(first or began) - began:.1f} s "
          f"(start-up and preflight probes), scenarios {span:.1f} s, after the last {m['wall_s'] - ((last or began) - began):.1f} s (reports)")
    print(f"while the scenarios ran: model {model_ms / 1000:.2f} s, harness {span - model_ms / 1000:.2f} s "
          f"= {(span - model_ms / 1000) / span:.2%} of the scenarios' wall time" if span > 0 else "no scenario ran")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sweep", help="also the concurrency sweep at these levels, e.g. 1,4,8,16,32")
    parser.add_argument("--sweep-only", action="store_true", help="skip the overhead table")
    parser.add_argument("--sweep-rounds", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.2, help="stub latency for the sweep, seconds")
    parser.add_argument("--llama-url", help="measure the cache share against this running llama-server (…/v1)")
    parser.add_argument("--llama-model", default="model")
    parser.add_argument("--harness-arg", action="append", default=[], help="extra argument for `harness run`")
    parser.add_argument("--before", type=Path, help="another checkout measured in the same rounds (before/after)")
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.bare:
        _bare(ns.bare, ns.base_url)
        return
    if ns.llama_url:
        llama_cache_share(ns.llama_url, ns.llama_model, ns.harness_arg)
        return
    if not ns.sweep_only:
        overhead(ns.rounds, ns.harness_arg, ns.before)
    if ns.sweep:
        levels = [int(c) for c in ns.sweep.split(",")]
        sweep(levels, ns.latency, ns.sweep_rounds, ns.harness_arg)
        if ns.before:
            print("\nthe same sweep, --before tree:")
            sweep(levels, ns.latency, ns.sweep_rounds, ns.harness_arg, tree=ns.before)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
