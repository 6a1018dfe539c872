"""Documentation generated from the registries the code runs on.

``--longhelp`` and the README's settings and fragments tables both come from
here, so they can never drift from :mod:`servicerouter.model.labels` and
:mod:`servicerouter.render.fragments`.  ``python -m servicerouter.cli.docs`` prints the
markdown; ``--check README.md`` fails when the README is out of date.
"""

from __future__ import annotations

import sys
import textwrap

from servicerouter import __version__
from servicerouter.model.labels import SETTINGS
from servicerouter.render.fragments import FRAGMENTS

BEGIN = "<!-- BEGIN GENERATED: {name} -->"
END = "<!-- END GENERATED: {name} -->"


def longhelp_text() -> str:
    """Every setting key and every fragment with its placeholders."""
    out = [
        f"servicerouter {__version__}: keeps HAProxy in step with Marathon.",
        "",
        "App settings: Marathon app labels, or env vars of the same name for apps",
        "written for servicerouter.py (labels win). {n} is the service port index.",
        "",
    ]
    for setting in SETTINGS:
        scope = "per port" if setting.per_port else "per app"
        out.append(f"  {setting.key}  ({scope}, from {setting.origin})")
        out.extend(textwrap.wrap(setting.help, 76, initial_indent="    ",
                                 subsequent_indent="    "))
        out.append(f"    Ex: {setting.example}")
        out.append("")
    out += [
        "Templates: every piece of the config is a fragment. A file of the same",
        "name in --templates-dir or ./templates overrides the built-in one. NAME",
        "files use str.format with the placeholders below (literal braces",
        "doubled; none = used as is); NAME.j2 files are Jinja2 with the same",
        "names plus service, app, labels, servers, vhosts and options.",
        "",
    ]
    for spec in FRAGMENTS:
        out.append(f"  {spec.name}  ({spec.scope})")
        out.extend(textwrap.wrap(spec.help, 76, initial_indent="    ",
                                 subsequent_indent="    "))
        placeholders = ", ".join(spec.placeholders) if spec.placeholders else "none"
        out.extend(textwrap.wrap(f"Placeholders: {placeholders}", 76,
                                 initial_indent="    ", subsequent_indent="      "))
        out.append("")
    return "\n".join(out)


def settings_table() -> str:
    rows = ["| key | scope | effect | example |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        scope = "port" if s.per_port else "app"
        rows.append(f"| `{s.key}` | {scope} | {_cell(s.help)} | `{s.example}` |")
    return "\n".join(rows)


def fragments_table() -> str:
    rows = ["| fragment | scope | placeholders | purpose |", "| --- | --- | --- | --- |"]
    for f in FRAGMENTS:
        names = ", ".join(f.placeholders) if f.placeholders else "none"
        rows.append(f"| `{f.name}` | {f.scope} | {names} | {_cell(f.help)} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def marathon_lb_flags_table() -> str:
    from servicerouter.cli.flags import build_parser
    from servicerouter.cli.marathon_lb_flags import flags_table

    return flags_table(build_parser())


GENERATED = {"settings": settings_table, "fragments": fragments_table,
             "marathon-lb-flags": marathon_lb_flags_table}


def stale_sections(readme: str) -> list[str]:
    """Names of generated README sections that differ from the registries."""
    stale = []
    for name, make in GENERATED.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        if begin not in readme or end not in readme:
            stale.append(name)
            continue
        body = readme.split(begin, 1)[1].split(end, 1)[0].strip()
        if body != make().strip():
            stale.append(name)
    return stale


def undocumented_flags(readme: str) -> list[str]:
    """Long flags of the parser the README never names as `` `--flag`` (start of a code span).

    The flags tables are written by hand (their defaults and meanings say more than
    ``--help``), so this only checks that none is missing.
    """
    import re

    from servicerouter.cli.flags import build_parser

    missing = []
    for action in build_parser()._actions:
        for option in action.option_strings:
            if option.startswith("--") and not re.search(
                    "`" + re.escape(option) + r"(?![A-Za-z0-9-])", readme):
                missing.append(option)
    return missing


def update_readme(readme: str) -> str:
    for name, make in GENERATED.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        head, rest = readme.split(begin, 1)
        _old, tail = rest.split(end, 1)
        readme = f"{head}{begin}\n{make()}\n{end}{tail}"
    return readme


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--check"] and len(args) == 2:
        with open(args[1], encoding="utf-8") as handle:
            readme = handle.read()
        stale = stale_sections(readme)
        if stale:
            print(f"{args[1]}: generated sections out of date: {', '.join(stale)} "
                  f"(run: python -m servicerouter.cli.docs --update {args[1]})")
        missing = undocumented_flags(readme)
        if missing:
            print(f"{args[1]}: flags not in any table: {', '.join(missing)}")
        return 1 if stale or missing else 0
    if args[:1] == ["--update"] and len(args) == 2:
        with open(args[1], encoding="utf-8") as handle:
            text = update_readme(handle.read())
        with open(args[1], "w", encoding="utf-8") as handle:
            handle.write(text)
        return 0
    print(settings_table())
    print()
    print(fragments_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
