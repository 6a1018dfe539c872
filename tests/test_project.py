"""Project hygiene: the license, the package metadata and the changelog agree."""

from __future__ import annotations

import configparser
import re

from servicerouter import __version__
from tests.paths import REPO


def _metadata() -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    return parser["metadata"]


def test_license_file_is_the_license_setup_cfg_names() -> None:
    meta = _metadata()
    assert meta["license"] == "Apache-2.0" and meta["license_files"].strip() == "LICENSE"
    text = (REPO / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 10000  # the full text
    assert "License :: OSI Approved :: Apache Software License" in meta["classifiers"]


def test_classifiers_match_python_requires() -> None:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    assert parser["options"]["python_requires"] == ">=3.11"
    versions = re.findall(r"Programming Language :: Python :: (3\.\d+)$",
                          parser["metadata"]["classifiers"], re.M)
    assert versions and min(versions, key=lambda v: int(v.split(".")[1])) == "3.11"


def test_changelog_starts_with_this_version() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    first = re.search(r"^## (\S+)", text, re.M)
    assert first is not None and first.group(1) == __version__


def test_orjson_is_required_not_optional() -> None:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    required = parser["options"]["install_requires"].split()
    assert any(req.startswith("orjson>=") and "<" in req for req in required)
    assert not parser["options.extras_require"]["fast"].strip()  # kept as an empty alias


def test_every_package_is_installed() -> None:
    """A package setup.cfg does not list works from a checkout and is missing once installed."""
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    listed = set(parser["options"]["packages"].split())
    on_disk = {".".join(init.parent.relative_to(REPO).parts)
               for init in (REPO / "servicerouter").rglob("__init__.py")}
    assert on_disk <= listed, sorted(on_disk - listed)
