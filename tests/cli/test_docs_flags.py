"""The README names every flag the parser has (the docs check fails otherwise)."""

from __future__ import annotations

from servicerouter.cli.docs import main, undocumented_flags
from tests.paths import REPO


def test_the_readme_names_every_flag() -> None:
    readme = (REPO / "README.md").read_text()
    assert undocumented_flags(readme) == []
    assert main(["--check", str(REPO / "README.md")]) == 0


def test_a_missing_flag_fails_the_check(tmp_path) -> None:
    readme = (REPO / "README.md").read_text().replace("`--stats-bind-addr", "`--other")
    assert undocumented_flags(readme) == ["--stats-bind-addr"]
    path = tmp_path / "README.md"
    path.write_text(readme)
    assert main(["--check", str(path)]) == 1
