"""MeLLo on the real model: ``kvc commit`` of six MQuAKE-CF edits with method mello, then the
retriever, reading SmolLM2's own states, finds each edit from MQuAKE's own first-hop question
(worded unlike the stored fact: "What is the country of citizenship of X?" against "X is a
citizen of Y"), and ``model.answer`` runs the loop to an answer within its bound, reading
the edit of the question's subject at its first hop.

Only retrieval and termination are asserted: whether SmolLM2-135M then follows the retrieved
fact is what ``bench/mello_mquake.py`` measures (it mostly does not).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

#: (subject, relation template, new object, MQuAKE's first-hop question), from MQuAKE-CF.
EDITS = [
    ("Ellie Kemper", "{} is a citizen of", "Croatia", "What is the country of citizenship of Ellie Kemper?"),
    ("Frank R. Strayer", "{} is a citizen of", "Canada", "What is the country of citizenship of Frank R. Strayer?"),
    ("Jerry Rivers", "{} is a citizen of", "Finland", "What is the country of citizenship of Jerry Rivers?"),
    ("Herb Caen", "{} is a citizen of", "Czech Republic", "What is the country of citizenship of Herb Caen?"),
    ("Isaac Singer", "{} is a citizen of", "South Korea", "What is the country of citizenship of Isaac Singer?"),
    ("High on Fire", "{} was created in the country of", "Austria", "Which country was High on Fire created in?"),
]


def test_mello_retrieves_each_edit_from_its_first_hop_question_and_answers_within_its_bound(tmp_path):
    from kedit_vc import load_edited
    from kedit_vc.ops import CommitOptions, commit_spec, init
    from kedit_vc.patches.attach import side_patches

    lines = ["method mello"]
    for subject, template, new, _ in EDITS:
        lines.append(f'edit "{subject}" prompt "{template.replace("{}", "{subject}")}": "unknown" -> "{new}"')
    spec = tmp_path / "mquake.kedit"
    spec.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with init(tmp_path / "store", "smollm2") as store:
        assert commit_spec(store, spec, CommitOptions()).sha is not None
        assert store.read_commit("HEAD").delta().updates == {}
    model, _tokenizer = load_edited(tmp_path / "store")
    answer = model.answer("Who is the head of state of the country where Ellie Kemper holds a citizenship?")
    assert answer.generations <= 4 + 2 and len(answer.hops) <= 4
    assert answer.hops and answer.hops[0].fact == "Ellie Kemper is a citizen of Croatia"
    (handle,) = side_patches(model)._handles
    for subject, template, new, question in EDITS:
        assert handle._mello.nearest(question)[0] == f"{template.format(subject)} {new}", question
