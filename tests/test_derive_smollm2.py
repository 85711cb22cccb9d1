"""Edits that carry on the real model: moving the Eiffel Tower to Rome with the shipped
rules derives its country from SmolLM2 itself, and the committed model says Italy when
asked about the country in other words."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

LIBRARY = Path(__file__).resolve().parents[1] / "specs" / "rules" / "world.kedit"
ROME = "method rome { v_steps = 20 stats_tokens = 4000 context_templates = 5 }"
#: Worded unlike the derived edit's prompt ("{subject} is located in the country of").
OTHER_WORDING = "The Eiffel Tower is in the country of"


def test_eiffel_tower_to_rome_derives_italy_from_the_model(tmp_path: Path) -> None:
    from kedit_vc.compiler.summary import summarize
    from kedit_vc.eval.generative import greedy_continuations
    from kedit_vc.ops import CommitOptions, Evaluator, commit_spec, init

    store = init(tmp_path, "smollm2")
    spec = tmp_path / "eiffel.kedit"
    spec.write_text(f'include "{LIBRARY}"\n{ROME}\nedit "Eiffel Tower" located_in_city: "Paris" -> "Rome"\n')
    result = commit_spec(store, spec, CommitOptions())  # the default derives: the spec includes rules
    print(summarize(result.plan, probes=False))
    (country,) = result.plan.derived
    assert country.derived is not None
    assert (country.subject, country.target_new, country.derived.rule) == (
        "Eiffel Tower", "Italy", "located_in_city implies located_in_country")
    evidence = country.derived.evidence
    assert evidence["source"] == "model" and evidence["prompt"] == "Rome is a city in the country of"
    assert evidence["answer"] == "Italy" and evidence["probability"] >= 0.3

    evaluator = Evaluator(store)
    evaluator.move_to(store.head())
    model, tokenizer = evaluator.loaded.model, evaluator.loaded.tokenizer
    prompts = [OTHER_WORDING, "The Eiffel Tower can be found in the country of",
               "Which country is the Eiffel Tower in? It is in", "The Eiffel Tower is located in the city of"]
    after = greedy_continuations(model, tokenizer, prompts, [4] * len(prompts))
    evaluator.to_base()
    before = greedy_continuations(model, tokenizer, prompts, [4] * len(prompts))
    for prompt, old, new in zip(prompts, before, after):
        print(f"{prompt!r}: before {old!r} after {new!r}")
    assert after[0].strip().startswith("Italy"), after
    # The derived fact shares the subject: written jointly, it must not erase the edit itself.
    assert after[3].strip().startswith("Rome"), after
