"""Load a spec file and its includes into one ``Program``, then check it.

Includes are expanded where they are written (depth first), each file at most once;
cycles and missing files are errors at the ``include`` line. A file's ``method``
statement is its default editor; a file without one inherits its includer's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Mapping

from .diagnostics import Diagnostic, SpecError
from .ir import DeriveSetting, Edit, Expectation, Implication, Include, MethodChoice, Model, Relation, Rules, Spec
from .parse import parse_source


@dataclass(frozen=True)
class ScopedEdit:
    """An edit with the default method of the file it was written in."""

    edit: Edit
    default_method: MethodChoice | None


@dataclass(frozen=True)
class Program:
    """A root spec with its includes expanded: everything the checker and compiler need."""

    path: str
    files: tuple[Spec, ...]
    edits: tuple[ScopedEdit, ...]
    sources: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def models(self) -> tuple[Model, ...]:
        return tuple(i for f in self.files for i in f.items if isinstance(i, Model))

    @property
    def model(self) -> str | None:
        models = self.models
        return models[0].name if models else None

    @property
    def expectations(self) -> tuple[Expectation, ...]:
        return tuple(i for f in self.files for i in f.items if isinstance(i, Expectation))

    @cached_property
    def relations(self) -> dict[str, Relation]:
        """Relations by name (the first declaration wins; duplicates are errors).

        Computed once: the checker asks for every edit (a property made 5,000 edits
        quadratic). Read it, do not change it.
        """
        table: dict[str, Relation] = {}
        for spec in self.files:
            for relation in spec.relations:
                table.setdefault(relation.name, relation)
        return table


    @cached_property
    def rules(self) -> dict[str, tuple[Implication, ...]]:
        """Implications by relation name: those in the relation's body, then ``rules for`` blocks
        in load order (duplicates of the same rule count once)."""
        table: dict[str, list[Implication]] = {}
        for spec in self.files:
            for item in spec.items:
                if isinstance(item, Relation):
                    found = table.setdefault(item.name, [])
                    found.extend(r for r in item.implications if r not in found)
                elif isinstance(item, Rules):
                    found = table.setdefault(item.relation, [])
                    found.extend(r for r in item.implications if r not in found)
        return {name: tuple(rules) for name, rules in table.items() if rules}

    @property
    def derive_setting(self) -> DeriveSetting | None:
        """The root file's ``derive = ...`` (an included library's setting does not decide)."""
        if not self.files:
            return None
        return next((i for i in self.files[0].items if isinstance(i, DeriveSetting)), None)


class _Loader:
    def __init__(self) -> None:
        self.files: list[Spec] = []
        self.edits: list[ScopedEdit] = []
        self.sources: dict[str, str] = {}
        self.diagnostics: list[Diagnostic] = []
        self.seen: set[str] = set()

    def visit_text(self, text: str, display: str, key: str, directory: Path,
                   stack: tuple[tuple[str, str], ...], inherited: MethodChoice | None) -> None:
        self.seen.add(key)
        self.sources[display] = text
        spec, diagnostics = parse_source(text, display)
        self.diagnostics.extend(diagnostics)
        if spec is None:
            return
        self.files.append(spec)
        own = next((i for i in spec.items if isinstance(i, MethodChoice)), None)
        default = own or inherited
        stack = stack + ((key, display),)
        for item in spec.items:
            if isinstance(item, Edit):
                self.edits.append(ScopedEdit(item, default))
            elif isinstance(item, Include):
                self.visit_include(item, display, directory, stack, default)

    def visit_include(self, include: Include, parent: str, directory: Path,
                      stack: tuple[tuple[str, str], ...], inherited: MethodChoice | None) -> None:
        if not include.path.strip():
            return  # reported by the checker as an empty string
        target = (directory / include.path)
        key = os.path.normcase(os.path.abspath(target))
        display = os.path.normpath(os.path.join(os.path.dirname(parent), include.path))
        keys = [k for k, _ in stack]
        if key in keys:
            chain = " -> ".join([d for _, d in stack[keys.index(key):]] + [display])
            self.diagnostics.append(Diagnostic(include.at("path"), f"include cycle: {chain}"))
            return
        if key in self.seen:
            return  # already included elsewhere: each file counts once
        text = _read(target, include, self.diagnostics)
        if text is not None:
            self.visit_text(text, display, key, target.parent, stack, inherited)


def _read(path: Path, include: Include | None, diagnostics: list[Diagnostic]) -> str | None:
    where = include.at("path") if include is not None else None
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        diagnostics.append(Diagnostic(where, f"no such file: {path}"))
    except IsADirectoryError:
        diagnostics.append(Diagnostic(where, f"{path} is a directory, not a spec file"))
    except UnicodeDecodeError as error:
        diagnostics.append(Diagnostic(where, f"{path} is not UTF-8 text ({error.reason} at byte {error.start})"))
    except OSError as error:
        diagnostics.append(Diagnostic(where, f"cannot read {path}: {error.strerror}"))
    return None


def _finish(loader: _Loader, path: str) -> Program:
    program = Program(path, tuple(loader.files), tuple(loader.edits), dict(loader.sources))
    from .check import check_program

    diagnostics = loader.diagnostics + check_program(program)
    if diagnostics:
        raise SpecError(_ordered(diagnostics, list(loader.sources)), loader.sources)
    return program


def _ordered(diagnostics: list[Diagnostic], files: list[str]) -> list[Diagnostic]:
    """File order as loaded, then line and column (stable for equal positions)."""
    order = {name: index for index, name in enumerate(files)}
    return sorted(diagnostics, key=lambda d: (order.get(d.span.file, 0), d.span.line, d.span.column)
                  if d.span is not None else (-1, 0, 0))


def load(path: str | os.PathLike[str]) -> Program:
    """Parse, expand includes and check ``path``; raise ``SpecError`` listing every problem."""
    display = os.fspath(path)
    loader = _Loader()
    text = _read(Path(display), None, loader.diagnostics)
    if text is None:
        raise SpecError(loader.diagnostics)
    key = os.path.normcase(os.path.abspath(display))
    loader.visit_text(text, display, key, Path(display).parent, (), None)
    return _finish(loader, display)


def load_text(text: str, path: str = "<spec>", directory: str | os.PathLike[str] = ".") -> Program:
    """Like ``load`` for text in memory; includes resolve against ``directory``."""
    loader = _Loader()
    key = os.path.normcase(os.path.abspath(os.path.join(os.fspath(directory), path)))
    loader.visit_text(text, path, key, Path(directory), (), None)
    return _finish(loader, path)
