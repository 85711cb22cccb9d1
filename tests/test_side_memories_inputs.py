"""The inputs side modules train to stay silent on: declared neighbours and the edit's own
relation prompt under stand-in subjects (``editors/common/positions.py``)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kedit_vc.compiler.plan import EditRequest, Probe
from kedit_vc.editors.common.positions import OTHER_SUBJECTS, neighbour_texts, other_subject_prompts


@settings(max_examples=60, deadline=None)
@given(count=st.integers(-2, 60), subject=st.sampled_from(("Eiffel Tower", "Toyota", "the BBC", "IKEA")),
       edit_id=st.text(min_size=1, max_size=8))
def test_stand_in_subjects_fill_the_relation_prompt_and_skip_the_edits_own(count: int, subject: str,
                                                                           edit_id: str) -> None:
    request = EditRequest(edit_id, subject, "{} is located in the city of", "Rome", "Paris")
    prompts = other_subject_prompts(request, count)
    pool = [s for s in OTHER_SUBJECTS if s.lower() != subject.lower()]
    assert len(prompts) == min(max(count, 0), len(pool))
    assert len(set(prompts)) == len(prompts)                       # never the same one twice
    assert all(p.endswith(" is located in the city of") for p in prompts)
    assert f"{subject} is located in the city of" not in prompts
    assert prompts == other_subject_prompts(request, count)       # deterministic


def test_neighbour_texts_are_the_declared_neighbours_with_their_answers() -> None:
    probes = (Probe("paraphrase", "Where is the Eiffel Tower?", "Rome"),
              Probe("neighbour", "The Louvre is in", "Paris"), Probe("neighbour", "Notre-Dame is in", "Paris"))
    request = EditRequest("e", "Eiffel Tower", "The {} is in", "Rome", "Paris", probes=probes)
    assert neighbour_texts(request, 5) == ["The Louvre is in Paris", "Notre-Dame is in Paris"]
    assert neighbour_texts(request, 1) == ["The Louvre is in Paris"]
    assert neighbour_texts(request, 0) == [] == neighbour_texts(request, -1)
