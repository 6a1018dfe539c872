"""Where the tests' own files are: the repository, its fixtures and helper scripts.

Every test finds them through here, so a test file can live at any depth of the
tree that mirrors the packages, and nothing outside the repository is read
(the Marathon payloads are copied into ``tests/fixtures/marathon``).
"""

from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
FIXTURES = TESTS_DIR / "fixtures"
MARATHON_FIXTURES = FIXTURES / "marathon"
LEGACY_TEMPLATES = FIXTURES / "legacy_templates"
