"""`python -m harness.llamacpp prepare|serve`: build what the demo and the integration tests need."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from harness.llamacpp._common import DEFAULT_QUANTS, MODEL_STEM, SOURCE_QUANT, LlamaError
from harness.llamacpp.binaries import find_llama_binaries, find_llama_imatrix
from harness.llamacpp.ladder import assemble_base_model, make_ladder, rung_info
from harness.llamacpp.server import LlamaServer

__all__ = ["main"]


def _prepare(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    try:
        binaries = find_llama_binaries(args.cache_dir, build=not args.no_build, progress=print)
        if not args.no_build and binaries.built_from != "path":
            # builds cached before llama-imatrix joined the targets get it now, not in the middle of an audit
            binaries = binaries.model_copy(update={"imatrix": find_llama_imatrix(binaries, args.cache_dir, progress=print)})
        t1 = time.perf_counter()
        base = assemble_base_model(args.cache_dir)
        t2 = time.perf_counter()
        ladder = make_ladder(base, tuple(q.strip() for q in args.quants.split(",") if q.strip()), binaries, progress=print)
    except LlamaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    t3 = time.perf_counter()
    print(f"llama.cpp {binaries.version} ({binaries.built_from}: {binaries.server}) in {t1 - t0:.1f}s")
    print(f"base model {base} in {t2 - t1:.1f}s")
    for quant, path in ladder.items():
        info = rung_info(path)
        made = f", from {info.requantized_from} in {info.seconds}s" if info and info.requantized_from else " (source)"
        print(f"  {quant:7} {path.stat().st_size / 1e6:7.1f} MB  {path}{made}")
    print(f"ladder ready in {t3 - t2:.1f}s")
    return 0


def _serve(args: argparse.Namespace) -> int:
    binaries = find_llama_binaries(args.cache_dir, progress=print)
    ladder = make_ladder(assemble_base_model(args.cache_dir), (args.quant,), binaries, progress=print)
    path = ladder[args.quant.upper()]
    with LlamaServer(path, binaries, alias=f"{MODEL_STEM}-{args.quant.lower()}", port=args.port) as server:
        print(f"{server.base_url}  model={server.model}  log={server.log_path}  (Ctrl-C stops it)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while server.running:
                time.sleep(0.5)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.llamacpp prepare|serve`: build what the demo and the integration tests need."""
    parser = argparse.ArgumentParser(prog="python -m harness.llamacpp", description=__doc__)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $HARNESS_CACHE_DIR or ~/.cache/agentic-harness")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="find or build llama.cpp, assemble the model, quantize the ladder")
    prep.add_argument("--quants", default=",".join(DEFAULT_QUANTS))
    prep.add_argument("--no-build", action="store_true", help="fail instead of building llama.cpp")
    serve = sub.add_parser("serve", help="serve one rung until Ctrl-C")
    serve.add_argument("quant", nargs="?", default=SOURCE_QUANT)
    serve.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    from harness.logs import configure_logging

    configure_logging(None)  # warnings only: progress is printed
    return _prepare(args) if args.command == "prepare" else _serve(args)


if __name__ == "__main__":
    sys.exit(main())
