"""Benchmark records -> edit requests with probes, per the field's definitions.

- CounterFact (ROME): rewrite and paraphrase probes target the new object with the true
  object as foil; neighbourhood probes target the true object with the new one as foil.
- zsRE (EasyEdit): rewrite ``src -> alt``, paraphrase ``rephrase -> alt``, locality
  ``loc -> loc_ans`` (scored as agreement with the unedited model), portability
  ``New Question -> New Answer``.
- CounterFact 5k (EasyEdit's flat format, the file for scale): the same definitions with
  ``ground_truth`` as the true object, one ``rephrase_prompt`` and one ``locality_prompt``.
- MQuAKE-CF: one request per requested rewrite (all applied together); the case's
  questions, with ``new_answer`` and each alias as targets, are multihop probes of one
  group, so a case counts as answered when any question gets any answer exactly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from kedit_vc.compiler.plan import EditRequest, Probe
from kedit_vc.errors import UsageError

FILES: Mapping[str, str] = {
    "counterfact": "counterfact_500.json",
    "zsre": "zsre_eval_portability_1037.json",
    "mquake": "mquake_cf_354.json",
    "counterfact5k": "counterfact_edit_5k.json",
}


@dataclass(frozen=True)
class BenchCase:
    """One benchmark case: the requests edited together and prompts for fluency."""

    case_id: str
    requests: tuple[EditRequest, ...]
    generation_prompts: tuple[str, ...] = ()


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """``override``, else ``$KVC_DATA``, else ``<repo root>/../shared/data``."""
    if override:
        return Path(override)
    if os.environ.get("KVC_DATA"):
        return Path(os.environ["KVC_DATA"])
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def load_records(benchmark: str, directory: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The records of ``benchmark`` from the data directory (UsageError if absent)."""
    if benchmark not in FILES:
        raise UsageError(f"unknown benchmark {benchmark!r}; known: {', '.join(sorted(FILES))}")
    path = data_dir(directory) / FILES[benchmark]
    if not path.is_file():
        raise UsageError(f"{path} not found; point --data or KVC_DATA at the folder holding {FILES[benchmark]}")
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def counterfact_case(record: Mapping[str, Any]) -> BenchCase:
    rw = record["requested_rewrite"]
    subject, new, true = rw["subject"], rw["target_new"]["str"], rw["target_true"]["str"]
    probes = [Probe("rewrite", rw["prompt"].format(subject), new, true)]
    probes += [Probe("paraphrase", p, new, true) for p in record["paraphrase_prompts"]]
    probes += [Probe("neighbour", p, true, new) for p in record["neighborhood_prompts"]]
    request = EditRequest(f"cf-{record['case_id']}", subject, rw["prompt"], new, true, tuple(probes))
    gen = tuple(dict.fromkeys(record.get("generation_prompts", ())))  # ROME repeats them
    return BenchCase(str(record["case_id"]), (request,), gen)


def counterfact_flat_case(record: Mapping[str, Any]) -> BenchCase:
    """CounterFact in EasyEdit's flat format: one paraphrase, one neighbour (same scoring)."""
    subject, new, true = record["subject"], record["target_new"], record["ground_truth"]
    prompt = record["prompt"]
    if subject not in prompt:
        raise ValueError(f"CounterFact record {record.get('case_id')}: subject {subject!r} not in {prompt!r}")
    probes = [Probe("rewrite", prompt, new, true)]
    if record.get("rephrase_prompt"):
        probes.append(Probe("paraphrase", record["rephrase_prompt"], new, true))
    if record.get("locality_prompt"):
        probes.append(Probe("neighbour", record["locality_prompt"], record["locality_ground_truth"], new))
    request = EditRequest(f"cf5k-{record['case_id']}", subject, prompt.replace(subject, "{}", 1), new, true,
                          tuple(probes))
    return BenchCase(str(record["case_id"]), (request,))


def zsre_case(record: Mapping[str, Any], index: int) -> BenchCase:
    subject, src, alt = record["subject"], record["src"], record["alt"]
    if subject not in src:
        raise ValueError(f"zsRE record {index}: subject {subject!r} not in {src!r}")
    port = record["portability"]
    probes = (
        Probe("rewrite", src, alt),
        Probe("paraphrase", record["rephrase"], alt),
        Probe("neighbour", record["loc"], record["loc_ans"]),
        Probe("hop", port["New Question"], port["New Answer"]),
    )
    true = record["answers"][0] if record.get("answers") else None
    request = EditRequest(f"zsre-{index}", subject, src.replace(subject, "{}", 1), alt, true, probes)
    return BenchCase(str(index), (request,))


def mquake_case(record: Mapping[str, Any]) -> BenchCase:
    case = f"mquake-{record['case_id']}"
    requests = []
    for k, rw in enumerate(record["requested_rewrite"]):
        new, true = rw["target_new"]["str"], rw["target_true"]["str"]
        probes = [Probe("rewrite", rw["prompt"].format(rw["subject"]), new, true)]
        requests.append(EditRequest(f"{case}-{k}", rw["subject"], rw["prompt"], new, true, tuple(probes)))
    answers = [record["new_answer"], *record.get("new_answer_alias", ())]
    multihop = tuple(Probe("multihop", q, a, group=case) for q in record["questions"] for a in dict.fromkeys(answers))
    last = requests[-1]
    requests[-1] = EditRequest(last.edit_id, last.subject, last.prompt, last.target_new, last.target_true,
                               last.probes + multihop)
    return BenchCase(str(record["case_id"]), tuple(requests))


_CONVERTERS: Mapping[str, Callable[[Sequence[Mapping[str, Any]]], list[BenchCase]]] = {
    "counterfact": lambda records: [counterfact_case(r) for r in records],
    "zsre": lambda records: [zsre_case(r, i) for i, r in enumerate(records)],
    "mquake": lambda records: [mquake_case(r) for r in records],
    "counterfact5k": lambda records: [counterfact_flat_case(r) for r in records],
}


def load_cases(benchmark: str, n: int | None = None,
               directory: str | os.PathLike[str] | None = None, skip: int = 0) -> list[BenchCase]:
    """``n`` cases of ``benchmark`` after the first ``skip`` (all if None), converted to requests."""
    records = load_records(benchmark, directory)[skip:]
    return _CONVERTERS[benchmark](records[:n] if n is not None else records)
