"""The config HAProxy runs, as the live engine keeps it: model, options and text in pieces.

A task event's edit of it must cost the same at 1,000 and at 50,000 tasks.

A task event changes one backend's servers.  Searching the whole text (tens of
megabytes at 50,000 tasks) for that backend's old section, checking that it is
there only once and splicing a new string of the whole size cost milliseconds
that grow with the cluster.  :class:`ConfigText` splits the text once (by the
full sync that rendered it, off any event's path) at every line that opens a
``backend`` section, and keeps which piece holds which backend.  An edit
(:meth:`ConfigText.swap`) then touches the piece of that backend (and the one
before it, when the section begins with lines of its own before its
``backend`` line, such as a userlist), copies the list of pieces (pointers),
and leaves every other piece shared.  The whole text is joined only when asked
(:meth:`ConfigText.assemble`): by the config file's deferred write, off the
event path, or by the full path.  A text spliced whole (an app update, a
section the pieces cannot place) is split again only by a full sync or after
an app update, never on a task event's path.

Exactness: a swap happens only where the bytes are those of the old section,
placed by its one ``backend`` line, whose name the text holds exactly once; so
the result is the text with that section replaced, the bytes a render from
scratch gives (``tests/engine/test_config_text.py``).  Anything it cannot place
that way (a section with no or several ``backend`` lines, a name the text holds
twice, as custom fragments could write) goes through the whole text, as before.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from servicerouter.apply.confdiff import RuntimePlan, parse_config, plan_runtime_update
from servicerouter.model.services import Model, Service
from servicerouter.render.config import RenderOptions

_OPENER = "backend"
_KEYWORD = len(_OPENER)
_BLANKS = (" ", "\t")
# What follows the keyword on a line that opens a section: a blank, then its name
# (which HAProxy requires; a line without one is still taken as opening a section).
_NAME = re.compile(r"[ \t]+([^\s#]*)")


def _opening_lines(text: str) -> Iterator[tuple[int, str]]:
    """(offset, backend name) of every line of ``text`` that opens a backend section."""
    at = 0 if text.startswith(_OPENER) else text.find("\n" + _OPENER) + 1 or -1
    while at >= 0:
        after = at + len(_OPENER)
        name = _NAME.match(text, after)
        if name is not None:
            yield at, name.group(1)
        at = text.find("\n" + _OPENER, after) + 1 or -1


class ConfigText:
    """A config's text as pieces split before each backend line (see the module).

    Immutable once built: :meth:`swap` returns a new one sharing the pieces it did
    not change, so a text handed to the deferred writer never changes under it.
    """

    __slots__ = ("_ambiguous", "_pieces", "_text", "_where")

    def __init__(self, text: str) -> None:
        self._text: str | None = text
        self._pieces: list[str] | None = None  # split when first edited (see index)
        self._where: dict[str, int] = {}  # backend name -> the piece its line opens
        self._ambiguous: frozenset[str] = frozenset()  # names the text opens twice

    @classmethod
    def _of_pieces(cls, pieces: list[str], where: dict[str, int],
                   ambiguous: frozenset[str]) -> ConfigText:
        made = cls.__new__(cls)
        made._text = None
        made._pieces = pieces
        made._where = where
        made._ambiguous = ambiguous
        return made

    def assemble(self) -> str:
        """The whole text (joined once, then kept)."""
        text = self._text
        if text is None:
            assert self._pieces is not None
            text = self._text = "".join(self._pieces)
        return text

    @property
    def text(self) -> str:
        return self.assemble()

    def is_of(self, applied: object) -> bool:
        """Whether ``applied`` (what the engine last applied: a text or a ConfigText)
        is this very config, by identity, as the task path has always compared."""
        return applied is self or (applied is not None and applied is self._text)

    def index(self) -> None:
        """Split the text into its pieces now: O(text), ~20-30 ms at 50,000 tasks, so
        done by the full sync that rendered it and after an app update once HAProxy
        has it, never by :meth:`swap` (a text it was not split stays whole: the
        caller's whole-text search costs less than a split)."""
        if self._pieces is not None:
            return
        text = self.assemble()
        pieces: list[str] = []
        where: dict[str, int] = {}
        ambiguous: set[str] = set()
        start = 0
        for at, name in _opening_lines(text):
            if at:  # (a text that opens with a backend has no head piece)
                pieces.append(text[start:at])
                start = at
            if name in where:
                ambiguous.add(name)
            where[name] = len(pieces)
        pieces.append(text[start:])
        self._pieces, self._where, self._ambiguous = pieces, where, frozenset(ambiguous)

    def index_after(self, previous: ConfigText) -> None:
        """:meth:`index`, knowing this text is ``previous`` with a few sections edited
        (an app update): ``previous``' pieces whose bytes are still in place are kept,
        so the split costs a comparison of the text (~2 ms at 50,000 tasks, not ~25);
        anything that does not line up (pieces gained or lost, a backend renamed)
        is split from scratch."""
        old = previous._pieces
        if self._pieces is not None or old is None:
            self.index()
            return
        text = self.assemble()
        end = len(text)
        pieces: list[str] = []
        at = 0
        final = len(old) - 1
        starts = text.startswith
        for number, piece in enumerate(old):
            stop = at + len(piece)
            if starts(piece, at) and (stop == end if number == final else (
                    stop < end and text[stop - 1] == "\n" and starts(_OPENER, stop)
                    and text[stop + _KEYWORD:stop + _KEYWORD + 1] in _BLANKS)):
                pieces.append(piece)
            else:
                stop = end if number == final else _next_opening(text, at + 1)
                if stop < 0 or _opening_name(text, at) != _opening_name(piece, 0):
                    self.index()
                    return
                pieces.append(text[at:stop])
            at = stop
        if at != end:
            self.index()
            return
        self._pieces, self._where, self._ambiguous = pieces, previous._where, previous._ambiguous

    @property
    def pieces(self) -> int:
        """How many pieces the text is kept in (after :meth:`index`)."""
        self.index()
        assert self._pieces is not None
        return len(self._pieces)

    def swap(self, old: str, new: str) -> ConfigText | None:
        """This text with the backend section ``old`` replaced by ``new``; None when
        it is not split (:meth:`index`) or ``old`` cannot be placed by its backend
        line (see the module): the caller then looks for it in the whole text."""
        pieces = self._pieces
        if pieces is None:  # never split on an event's path (see index)
            return None
        old_line, new_line = _one_opening(old), _one_opening(new)
        if old_line is None or new_line is None or old_line[1] != new_line[1]:
            return None
        name = old_line[1]
        piece_at = self._where.get(name)
        if piece_at is None or name in self._ambiguous:
            return None
        lead, new_lead = old_line[0], new_line[0]  # lines before the backend line
        piece = pieces[piece_at]
        if not piece.startswith(old[lead:]):
            return None
        if lead or new_lead:
            if piece_at == 0:
                return None
            before = pieces[piece_at - 1]
            if lead and not before.endswith(old[:lead]):
                return None
        changed = list(pieces)
        changed[piece_at] = new[new_lead:] + piece[len(old) - lead:]
        if lead or new_lead:
            changed[piece_at - 1] = before[:len(before) - lead] + new[:new_lead]
        return ConfigText._of_pieces(changed, self._where, self._ambiguous)


def _opening_name(text: str, at: int) -> str | None:
    """The backend name of the opening line at ``at`` (None: no opening line there)."""
    if not text.startswith(_OPENER, at):
        return None
    name = _NAME.match(text, at + len(_OPENER))
    return None if name is None else name.group(1)


def _next_opening(text: str, start: int) -> int:
    """Where the first line opening a backend section at or after ``start`` begins (-1:
    none)."""
    at = text.find("\n" + _OPENER, start - 1) + 1
    while at > 0:
        if _opening_name(text, at) is not None:
            return at
        at = text.find("\n" + _OPENER, at) + 1
    return -1


def _one_opening(section: str) -> tuple[int, str] | None:
    """Where ``section``'s one backend line is, and its name (None: not exactly one)."""
    found = None
    for line in _opening_lines(section):
        if found is not None:
            return None
        found = line
    return found


@dataclass(frozen=True)
class RunningConfig:
    """What HAProxy runs, as the sync that rendered it saw it."""

    model: Model  # services sorted by (app id, bind port), as build_model leaves them
    options: RenderOptions
    config: ConfigText  # the text (given as a str, it is kept as a ConfigText)
    # Indexes of the whole config built once and kept up to date: the app path's
    # (servicerouter.engine.app_path.RoutingIndex), the deployment groups' members,
    # the checked servers per interval, the routed servers; servers-only updates share them.
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.config, str):
            object.__setattr__(self, "config", ConfigText(self.config))

    @property
    def text(self) -> str:
        """The whole text (joined when first asked: the task path never needs it)."""
        return self.config.assemble()


def app_slice(services: tuple[Service, ...], app_id: str) -> tuple[int, int]:
    """Where ``app_id``'s services are (services are sorted by app id)."""
    low = bisect.bisect_left(services, app_id, key=_app_of)
    high = bisect.bisect_right(services, app_id, lo=low, key=_app_of)
    return low, high


def _app_of(service: Service) -> str:
    return service.app_id


def backend_plan(old_backend: str, new_backend: str) -> RuntimePlan | str:
    """The Runtime API plan from one backend section to another, or why there is none
    (more than servers changed): the rules a whole-config diff follows."""
    verdict = plan_runtime_update(parse_config(old_backend), parse_config(new_backend))
    return verdict.reason if verdict.plan is None else verdict.plan


def swap_backend(text: str, old_backend: str, new_backend: str,
                 name: str) -> tuple[str, RuntimePlan] | str:
    """``text`` with one backend section replaced, and the Runtime API plan for it; a
    reason when the change is not servers only or the section is not found once.
    (The whole text is searched: :func:`swap_section` is the flat way.)"""
    plan = backend_plan(old_backend, new_backend)
    if isinstance(plan, str):
        return plan
    spliced = _splice_whole(text, old_backend, new_backend)
    if spliced is None:
        return f"backend {name} is not where the running config should have it"
    return spliced, plan


def swap_section(config: ConfigText, old_backend: str, new_backend: str,
                 name: str) -> tuple[ConfigText, RuntimePlan] | str:
    """:func:`swap_backend` on a :class:`ConfigText`: placed by the backend's line, at a
    cost that does not grow with the config (the whole text only for sections the
    pieces cannot place, see the module)."""
    plan = backend_plan(old_backend, new_backend)
    if isinstance(plan, str):
        return plan
    swapped = config.swap(old_backend, new_backend)
    if swapped is None:
        spliced = _splice_whole(config.assemble(), old_backend, new_backend)
        if spliced is None:
            return f"backend {name} is not where the running config should have it"
        swapped = ConfigText(spliced)
    return swapped, plan


def _splice_whole(text: str, old: str, new: str) -> str | None:
    """``text`` with ``old`` (found exactly once, at a line start) replaced by ``new``."""
    start = text.find(old)
    if (start < 0 or (start and text[start - 1] != "\n" and old[:1] != "\n")
            or text.find(old, start + 1) >= 0):
        return None
    return text[:start] + new + text[start + len(old):]


__all__ = ["ConfigText", "RunningConfig", "app_slice", "backend_plan", "swap_backend",
           "swap_section"]
