"""What differs between targets besides the quantization, and what could not be checked.

One table of fields serves the preflight warning and the report, so both say the same thing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from harness.compare.models import Confound
from harness.preflight import parameter_count
from harness.records import Provenance, Results

__all__ = ["provenance_confounds", "run_confounds"]


# provenance fields where two builds of "the same model, another quant" must agree
# what may differ between builds besides the quant; one table for the preflight warning and the report
_CONFOUND_FIELDS: list[tuple[str, str, Any]] = [
    ("server", "server kind", lambda p: p.server),
    ("server_version", "server version", lambda p: p.server_version),
    ("chat_template", "chat template", lambda p: p.chat_template),
    ("context_length", "context length", lambda p: p.context_length),
    ("family", "model family", lambda p: p.family),
    ("parameter_size", "parameter count", lambda p: parameter_count(p)),
    ("imatrix", "imatrix calibration data", lambda p: p.imatrix),
    ("requantized_from", "source the quant was made from", lambda p: p.extra.get("requantized_from")),
    ("kv_cache_dtype", "KV cache dtype", lambda p: p.extra.get("kv_cache_dtype")),
    ("tools_in_prompt", "tools in the prompt", lambda p: p.preflight.get("tools_in_prompt")),
    # not the tool-call format: on one server and template, a build that leaks its calls is the quant's doing;
    # nor tool_choice handling: runs send "auto", which every server honours
]


def _shown(value: Any) -> str | None:
    if value is None or value == "" or value == "unknown":
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def provenance_confounds(provenances: dict[str, Provenance]) -> tuple[list[Confound], list[str]]:
    """What differs between targets besides the quantization, and what could not be checked.

    Only known values are compared (an unknown is listed as unverified, not as a difference).
    """
    confounds: list[Confound] = []
    unverified: list[str] = []
    if len(provenances) < 2:
        return confounds, unverified
    for field, label, get in _CONFOUND_FIELDS:
        values = {n: _shown(get(p)) for n, p in provenances.items()}
        known = {v for v in values.values() if v is not None}
        if len(known) > 1:
            listed = ", ".join(f"{n}={v}" for n, v in values.items() if v is not None)
            confounds.append(Confound(
                field=field, values=values,
                message=f"{label} differs ({listed}): a gap between these targets may come from this, not from the quantization",
            ))
        elif known and any(v is None for v in values.values()):
            missing = [n for n, v in values.items() if v is None]
            unverified.append(f"{label} unknown for {', '.join(missing)}; cannot rule out a difference")
    placed = {n: p for n, p in provenances.items() if p.memory_bytes and p.vram_bytes is not None}
    spilled = [n for n, p in placed.items() if p.vram_bytes < p.memory_bytes]
    if spilled and len(spilled) < len(placed):
        confounds.append(Confound(
            field="cpu_spill", values={n: "yes" if n in spilled else "no" for n in placed},
            message=f"{', '.join(spilled)} partly run on the CPU and the others do not: latencies are not comparable",
        ))
    # the same file served twice is noise only when nothing else about the serving differs (an audit's
    # KV-cache or context axis serves one file several ways on purpose)
    by_digest: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for name, p in provenances.items():
        if p.digest:
            by_digest[(p.digest, str(p.extra.get("kv_cache_dtype")), str(p.context_length))].append(name)
    for (digest, _, _), names in by_digest.items():
        if len(names) > 1:
            confounds.append(Confound(
                field="digest", values={n: digest for n in names},
                message=f"{' and '.join(names)} are the same build (digest {digest[:12]}): any gap between them is noise",
            ))
    return confounds, unverified


def run_confounds(results: Results, names: list[str]) -> tuple[list[Confound], list[str]]:
    """Provenance confounds plus differences between merged sessions: sampling and scenario content."""
    confounds, unverified = provenance_confounds({n: results.provenance(n) for n in names})
    samplings = {h.config.sampling.model_dump_json() for h in results.headers}
    if len(samplings) > 1:
        confounds.append(Confound(
            field="sampling",
            values={h.run_id: h.config.sampling.model_dump_json() for h in results.headers},
            message="sampling settings differ between the merged sessions",
        ))
    hashes: dict[str, set[str]] = defaultdict(set)
    for r in results.latest():
        hashes[r.scenario_id].add(r.scenario_hash)
    changed = sorted(sid for sid, hs in hashes.items() if len(hs) > 1)
    if changed:
        confounds.append(Confound(
            field="scenario_hash",
            values={sid: ", ".join(sorted(hashes[sid])) for sid in changed},
            message=f"scenario content differs between runs for {', '.join(changed)}: targets did not face the same task",
        ))
    return confounds, unverified


