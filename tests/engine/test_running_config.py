"""The running config's text in pieces (servicerouter.engine.running_config.ConfigText).

A swap placed by the backend line must give the very bytes of replacing the
section in the whole text, share every piece it did not touch, leave the text it
came from as it was, and refuse (None) whatever it cannot place for sure, so the
caller falls back to the whole-text search.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from servicerouter.engine.running_config import ConfigText, RunningConfig, swap_section
from servicerouter.model.services import Model
from servicerouter.render.config import RenderOptions

HEAD = "global\n  daemon\n\nfrontend f\n  bind :80\n  use_backend b0\n\n"

NAMES = st.sampled_from(["b0", "b1", "b2", "b3"])
SERVERS = st.lists(st.sampled_from(["  server a 10.0.0.1:1\n", "  server b 10.0.0.2:2\n",
                                    "  server c 10.0.0.3:3 weight 2\n"]), max_size=3)


@st.composite
def sections(draw: st.DrawFn, name: str) -> str:
    """One backend's section as fragments could write it: maybe a userlist before
    the backend line, a tab after the keyword, a comment, a few servers."""
    lead = draw(st.sampled_from(["", f"userlist user_{name}\n  user u password x\n"]))
    blank = draw(st.sampled_from([" ", "\t", "  "]))
    comment = draw(st.sampled_from(["", "  # backend, not a line that opens one\n",
                                    "backends-are-not-opened-here\n"]))
    return f"{lead}backend{blank}{name}\n  balance roundrobin\n{comment}" \
        + "".join(draw(SERVERS))


@st.composite
def configs(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    return names, [draw(sections(name)) for name in names]


def _whole_splice(text: str, old: str, new: str) -> str:
    start = text.index(old)
    return text[:start] + new + text[start + len(old):]


@settings(max_examples=300, deadline=None)
@given(config=configs(), data=st.data())
def test_swaps_give_the_bytes_of_a_whole_text_splice(config: tuple[list[str], list[str]],
                                                     data: st.DataObject) -> None:
    names, runs = config
    tail = data.draw(st.sampled_from(["", "\n# servicerouter map files\n#   a b0\n"]))
    text = ConfigText(HEAD + "".join(runs) + tail)
    text.index()
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(names) - 1))
        new_run = data.draw(sections(names[at]))
        before = text.assemble()
        swapped = text.swap(runs[at], new_run)
        expected = HEAD + "".join(runs[:at] + [new_run] + runs[at + 1:]) + tail
        assert swapped is not None, (runs[at], new_run)
        assert swapped.assemble() == expected
        assert text.assemble() == before, "the text it came from is unchanged"
        runs[at] = new_run
        text = swapped


def test_a_swap_shares_the_pieces_it_does_not_touch() -> None:
    runs = [f"backend b{n}\n  server s 10.0.0.{n}:80\n" for n in range(100)]
    text = ConfigText(HEAD + "".join(runs))
    text.index()
    assert text.pieces == 101  # the head, then one per backend
    swapped = text.swap(runs[40], runs[40] + "  server t 10.0.1.1:80\n")
    assert swapped is not None
    kept = [a is b for a, b in zip(text._pieces or [], swapped._pieces or [], strict=True)]
    assert kept.count(False) == 1
    assert swapped._text is None, "not joined until someone asks"
    assert swapped.assemble() == _whole_splice(text.assemble(), runs[40],
                                               runs[40] + "  server t 10.0.1.1:80\n")


def test_what_it_cannot_place_is_left_to_the_whole_text() -> None:
    run = "backend b1\n  server s 10.0.0.1:80\n"
    twice = ConfigText(HEAD + run + "backend b1\n  server s 10.0.0.1:80\n")
    twice.index()
    assert twice.swap(run, run + "  server t 1.1.1.1:1\n") is None  # a name opened twice
    text = ConfigText(HEAD + run)
    assert text.swap(run, run + "  server t 1.1.1.1:1\n") is None  # not split: never here
    assert text._pieces is None
    text.index()
    assert text.swap("  server s 10.0.0.1:80\n", "") is None  # no backend line
    assert text.swap(run + "backend b2\n", run) is None  # two backend lines
    assert text.swap(run, run.replace("b1", "b2")) is None  # renamed
    assert text.swap(run.replace("10.0.0.1", "10.0.0.9"), run) is None  # other bytes
    assert text.swap("backend b9\n", "backend b9\n  server x 1.1.1.1:1\n") is None
    # swap_section then finds it in the whole text, when it is there exactly once
    odd_old = run + "backend b1x\n  server u 10.0.0.5:80\n"  # two backends: not placed
    odd_new = odd_old + "  server t 10.0.0.2:80\n"
    plain = ConfigText(HEAD + odd_old)
    plain.index()
    assert plain.swap(odd_old, odd_new) is None
    done = swap_section(plain, odd_old, odd_new, "b1")
    assert not isinstance(done, str)
    assert done[0].assemble() == HEAD + odd_new
    assert done[0]._pieces is None, "spliced whole: split again only by a full sync"
    whole = swap_section(ConfigText(HEAD + run), run, run + "  server t 10.0.0.2:80\n", "b1")
    assert not isinstance(whole, str)
    assert whole[0].assemble() == HEAD + run + "  server t 10.0.0.2:80\n"
    missing = swap_section(ConfigText(HEAD), run, run + "  server t 10.0.0.2:80\n", "b1")
    assert missing == "backend b1 is not where the running config should have it"
    assert [server.port for _backend, server in done[1].add] == ["80"]


def test_running_config_keeps_a_text_given_as_str_and_compares_by_identity() -> None:
    text = HEAD + "backend b0\n  server s 10.0.0.1:80\n"
    running = RunningConfig(Model(()), RenderOptions(), text)  # type: ignore[arg-type]
    assert isinstance(running.config, ConfigText)
    assert running.text is text
    assert running.config.is_of(text) and running.config.is_of(running.config)
    assert not running.config.is_of(str(text + " ")[:-1])  # equal, not the same
    assert not running.config.is_of(None)


@settings(max_examples=300, deadline=None)
@given(config=configs(), data=st.data())
def test_a_split_after_edits_is_the_split_from_scratch(config: tuple[list[str], list[str]],
                                                       data: st.DataObject) -> None:
    """index_after: the text of an app update (sections and the tail edited in the whole
    text) split reusing the pieces before it gives the pieces a split from scratch gives,
    whatever the edits did (a userlist more or less, a section gone or new, a name)."""
    names, runs = config
    tails = ["", "\n# servicerouter map files\n#   a b0\n", "\n# map\n#   a b0\n#   c b1\n"]
    before = ConfigText(HEAD + "".join(runs) + data.draw(st.sampled_from(tails)))
    before.index()
    edited = list(runs)
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(0, len(edited) - 1))
        edited[at] = data.draw(st.one_of(sections(names[at]), sections("b9"), st.just("")))
    after = ConfigText(HEAD + "".join(edited) + data.draw(st.sampled_from(tails)))
    after.index_after(before)
    fresh = ConfigText(after.assemble())
    fresh.index()
    assert after._pieces == fresh._pieces
    assert after._where == fresh._where and after._ambiguous == fresh._ambiguous
    if edited == runs:
        assert all(a is b for a, b in zip(after._pieces[:-1] or [], before._pieces or [],
                                          strict=False)), "unchanged pieces are kept"
