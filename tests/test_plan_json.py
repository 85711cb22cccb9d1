"""Plans are stored in every commit as JSON and read back by squash, merge, revert and
show: a plan must survive ``to_json`` -> ``json`` text -> ``from_json`` unchanged, for any
content (issue 23: JSON round trips where none were checked)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from kedit_vc.compiler.plan import Derivation, EditorCall, EditRequest, Expectation, Plan, Probe

text = st.text(min_size=1, max_size=12)
maybe = st.none() | text
probes = st.builds(Probe, kind=st.sampled_from(["rewrite", "paraphrase", "neighborhood", "multihop"]),
                   prompt=text, target=text, foil=maybe, group=maybe)
derivations = st.builds(Derivation, parent=text, rule=text, kind=st.sampled_from(["compose", "reverse", "alias"]),
                        evidence=st.dictionaries(st.sampled_from(["source", "prompt", "answer"]), text, max_size=3))
requests = st.builds(EditRequest, edit_id=text, subject=text, prompt=text.map(lambda t: "{} " + t),
                     target_new=text, target_true=maybe, probes=st.lists(probes, max_size=3).map(tuple),
                     derived=st.none() | derivations)
hparam_values = st.integers(-5, 50) | st.floats(0.001, 10.0) | st.booleans() | st.lists(st.integers(0, 30), max_size=4)
calls = st.builds(EditorCall, method=st.sampled_from(["rome", "memit", "alphaedit", "grace"]),
                  hparams=st.dictionaries(st.sampled_from(["layer", "layers", "v_steps", "raw_context"]),
                                          hparam_values, max_size=3),
                  requests=st.lists(requests, min_size=1, max_size=3).map(tuple))
expectations = st.builds(Expectation, metric=st.sampled_from(["reliability", "locality", "gen_reliability"]),
                         op=st.sampled_from([">=", ">", "<=", "<"]), threshold=st.floats(0.0, 1.0))
plans = st.builds(Plan, calls=st.lists(calls, min_size=1, max_size=3).map(tuple), model=maybe,
                  expectations=st.lists(expectations, max_size=2).map(tuple),
                  notes=st.lists(text, max_size=2).map(tuple))


@settings(max_examples=60, deadline=None)
@given(plans)
def test_a_plan_survives_its_json_text(plan: Plan) -> None:
    stored = json.loads(json.dumps(plan.to_json()))
    assert Plan.from_json(stored) == plan
