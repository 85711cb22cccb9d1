"""Token positions of a subject inside a prompt, under the shared prompt prefix."""

from __future__ import annotations

from typing import Any

from kedit_vc.errors import EditError
from kedit_vc.models.prompting import encode_text


def subject_last_index(tokenizer: Any, template: str, subject: str) -> int:
    """Index of the subject's last token in ``encode_text(template.format(subject))``.

    ``template`` holds one ``{}`` for the subject. The prefix before ``{}`` plus the
    subject is tokenized on its own; its length minus one is the subject's last token
    (the "subject_last" fact-token strategy of ROME/MEMIT).
    """
    if "{}" not in template:
        raise EditError(f"the prompt {template!r} has no place for the subject")
    before = template[: template.index("{}")]
    return len(encode_text(tokenizer, before + subject)) - 1


def fill(template: str, subject: str) -> str:
    return template.replace("{}", subject, 1)


def neighbour_texts(request: Any, limit: int) -> list[str]:
    """Up to ``limit`` of ``request``'s declared neighbour probes as text (prompt and the answer
    they keep): same relation, other subjects, the inputs a side module confuses most with
    the edit. Editors that learn to stay silent off their edit (WISE's router, T-Patcher's
    memory, CaliNet's keep term) train against them."""
    return [f"{p.prompt} {p.target}".strip() for p in neighbour_probes(request, limit)]


def neighbour_probes(request: Any, limit: int) -> list[Any]:
    """Up to ``limit`` of ``request``'s declared neighbour probes, in order."""
    return [p for p in request.probes if p.kind == "neighbour"][:max(limit, 0)]


#: Stand-in subjects of every kind (people, places, organisations, works, things), written
#: for this project: put in an edit's own relation prompt, they are the inputs a side module
#: keyed on that prompt must stay silent on (the prompt's last token otherwise carries the
#: relation more than the subject).
OTHER_SUBJECTS = (
    "Marie Curie", "Lake Victoria", "Toyota", "the Amazon River", "Leo Tolstoy", "Mount Kilimanjaro",
    "the Beatles", "Buenos Aires", "Microsoft", "Frida Kahlo", "the Danube", "Nintendo", "Nelson Mandela",
    "the Sahara", "Oxford University", "Pablo Neruda", "Mumbai", "Volkswagen", "the Golden Gate Bridge",
    "Serena Williams", "Iceland", "the Red Cross", "Wolfgang Amadeus Mozart", "Cairo", "Samsung",
    "the Louvre", "Hayao Miyazaki", "the Andes", "Real Madrid", "Ada Lovelace", "Istanbul", "Heineken",
    "the Great Barrier Reef", "Akira Kurosawa", "Norway", "the BBC", "Gabriel Garcia Marquez", "Seoul",
    "IKEA", "Mahatma Gandhi",
)


def other_subject_prompts(request: Any, count: int) -> list[str]:
    """``request``'s relation prompt filled with ``count`` of ``OTHER_SUBJECTS`` (its own
    subject skipped), taken in a fixed order starting at a place set by the edit id, so
    successive edits see different ones."""
    pool = [s for s in OTHER_SUBJECTS if s.lower() != request.subject.lower()]
    start = sum(request.edit_id.encode()) % len(pool)
    return [fill(request.prompt, pool[(start + i) % len(pool)]) for i in range(min(max(count, 0), len(pool)))]
