"""The checked form of a .kedit file: frozen dataclasses, one per construct.

Every node keeps the ``Span`` of the text it came from (and ``parts``: spans of its
sub-fields) so errors can point at the exact place. Spans never take part in equality,
which is what lets ``parse(format(spec)) == spec`` hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Span:
    """A region of a source file; lines and columns count from 1."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int


def _span() -> Span | None:
    return field(default=None, compare=False, repr=False)


def _parts() -> Mapping[str, Span]:
    return field(default_factory=dict, compare=False, repr=False)


class _Located:
    """Mixin: ``at(part)`` is the span of a sub-field, falling back to the node's span."""

    span: Span | None
    parts: Mapping[str, Span]

    def at(self, part: str) -> Span | None:
        return self.parts.get(part, self.span)


@dataclass(frozen=True)
class Comment:
    """A ``# ...`` comment; kept beside the IR so the formatter can put it back."""

    line: int
    column: int
    text: str
    blank_before: bool = False  # an empty line precedes it in the source; kept by fmt


@dataclass(frozen=True)
class Range:
    """``low..high``, both ends included (MEMIT's "layers 4..8" means 4 to 8)."""

    low: int
    high: int


@dataclass(frozen=True)
class ListValue:
    items: tuple["Value", ...]


@dataclass(frozen=True)
class MapValue:
    params: tuple["Param", ...]


Value = int | float | str | Range | ListValue | MapValue


@dataclass(frozen=True)
class Param(_Located):
    """``name = value`` inside ``method NAME { ... }`` or a nested map."""

    name: str
    value: Value
    span: Span | None = _span()
    parts: Mapping[str, Span] = _parts()


@dataclass(frozen=True)
class MethodChoice(_Located):
    """``method NAME { k = v }``: the editor and its hyperparameter overrides."""

    name: str
    params: tuple[Param, ...] = ()
    span: Span | None = _span()
    parts: Mapping[str, Span] = _parts()


@dataclass(frozen=True)
class Model(_Located):
    name: str
    span: Span | None = _span()
    parts: Mapping[str, Span] = _parts()


@dataclass(frozen=True)
class Expectation(_Located):
    """``expect METRIC OP NUMBER``: a threshold for the CI gate."""

    metric: str
    op: str
    threshold: float
    span: Span | None = _span()
    parts: Mapping[str, Span] = _parts()


@dataclass(frozen=True)
class Include(_Located):
    path: str
    span: Span | None = _span()
    parts: Mapping[str, Span] = _parts()


#: Probe kinds written directly in an edit body / inside ``portability { }``.
BODY_PROBES = ("paraphrase", "neighbour", "keep", "attribute")
PORTABILITY_PROBES = ("alias", "hop", "reverse", "multihop")
#: Kinds that may name another subject instead of giving a whole prompt.
SUBJECT_FORM_PROBES = ("neighbour", "attribute", "alias")


@dataclass(frozen=True)
class Probe(_Located):
    """One probe as written.

    ``text`` is a prompt (``{subject}`` is the edited subject), or, when ``is_subject``
    is true (``neighbour "Louvre" => ...``), another subject to put into the edit's
    own prompt. ``expected`` is None only for paraphrases (they expect the new object);
    ``foil`` is an explicit ``not "..."``; ``group`` ties multi-hop questions together.
    """

    kind: str
    text: str
    expected: str | None = None
    foil: str | None = None
    is_subject: bool = False
    group: str | None = None
    span: Span | None = _span()
    parts: Mapping[str, Span] = _parts()


@dataclass(frozen=True)
class Portability(_Located):
    """``portability { ... }``: probes that test whether the edit carries over."""

    probes: tuple[Probe, ...] = ()
    span: Span | None = _span()
    parts: Mapping[str, Span] = _parts()


@dataclass(frozen=True)
class Also(_Located):
    """``alias "Tour Eiffel"`` in an edit body: another name of the subject that must follow.

    Derivation adds the same fact with the alias as subject (unlike a portability
    ``alias`` probe, which only measures whether the edit carried over).
    """

    name: str
    span: Span | None = _span()
    parts: Mapping[str, Span] = _parts()


BodyItem = Probe | Portability | MethodChoice | Also

#: Implication kinds: a composed fact about the subject, a reverse fact about the object.
IMPLICATION_KINDS = ("compose", "reverse")


@dataclass(frozen=True)
class Implication(_Located):
    """One rule: what follows from every edit ``S rel: old -> O`` of its relation.

    ``compose``: ``implies NAME "{subject} ..." from "{object} ..."``; the derived edit
    is ``S`` under ``template`` (relation ``name``) with the answer to ``source`` for
    ``{object}`` = O. ``reverse``: ``implies reverse "... {object} ..."``; the derived
    edit is about O (``template`` with ``{object}`` = O) and its new object is ``S``.
    """

    kind: str
    template: str
    name: str | None = None
    source: str | None = None
    span: Span | None = _span()
    parts: Mapping[str, Span] = _parts()


@dataclass(frozen=True)
class Relation(_Located):
    """``relation NAME "template" { paraphrase ... implies ... }``: a reusable prompt family."""

    name: str
    template: str
    paraphrases: tuple[Probe, ...] = ()
    implications: tuple[Implication, ...] = ()
    span: Span | None = _span()
    parts: Mapping[str, Span] = _parts()


@dataclass(frozen=True)
class Rules(_Located):
    """``rules for NAME { implies ... }``: rules for a relation declared elsewhere."""

    relation: str
    implications: tuple[Implication, ...] = ()
    span: Span | None = _span()
    parts: Mapping[str, Span] = _parts()


@dataclass(frozen=True)
class DeriveSetting(_Located):
    """``derive = true | false``: the spec's choice (``--derive/--no-derive`` override it)."""

    value: str
    span: Span | None = _span()
    parts: Mapping[str, Span] = _parts()

    @property
    def enabled(self) -> bool:
        return self.value == "true"


@dataclass(frozen=True)
class Edit(_Located):
    """``edit "S" REL: "old" -> "new" { ... }``, ``edit "S" prompt "..." -> "new"``, or
    ``edit "S" REL prompt "..." -> "new"``.

    At least one of ``relation`` and ``prompt`` is set. With both, the edit is a fact of
    the relation (its rules and paraphrases apply) in its own wording: the prompt is
    the rewrite template (CounterFact words one Wikidata relation many ways).
    ``body`` keeps the written order so the formatter can reproduce it.
    """

    subject: str
    relation: str | None
    prompt: str | None
    old: str | None
    new: str
    body: tuple[BodyItem, ...] = ()
    span: Span | None = _span()
    parts: Mapping[str, Span] = _parts()

    @property
    def probes(self) -> tuple[Probe, ...]:
        """Every probe of the body, portability blocks flattened, in written order."""
        out: list[Probe] = []
        for item in self.body:
            if isinstance(item, Probe):
                out.append(item)
            elif isinstance(item, Portability):
                out.extend(item.probes)
        return tuple(out)

    @property
    def methods(self) -> tuple[MethodChoice, ...]:
        return tuple(item for item in self.body if isinstance(item, MethodChoice))

    @property
    def aliases(self) -> tuple[Also, ...]:
        return tuple(item for item in self.body if isinstance(item, Also))


Item = Model | MethodChoice | Expectation | Relation | Rules | DeriveSetting | Edit | Include


@dataclass(frozen=True)
class Spec:
    """One parsed file, items in written order (includes not yet expanded)."""

    items: tuple[Item, ...] = ()
    path: str = field(default="<spec>", compare=False)
    comments: tuple[Comment, ...] = field(default=(), compare=False, repr=False)

    @property
    def edits(self) -> tuple[Edit, ...]:
        return tuple(i for i in self.items if isinstance(i, Edit))

    @property
    def relations(self) -> tuple[Relation, ...]:
        return tuple(i for i in self.items if isinstance(i, Relation))
