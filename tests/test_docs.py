"""The README and docs/ hold together: a short README, links that lead somewhere, and a quick start whose test
command is the one CI runs.

- README.md has at most ``README_MAX_LINES`` lines (the user's page; measurements and history live in docs/);
- every relative link in README.md and docs/*.md points to a file that exists, and a ``#anchor`` into a
  markdown file names one of its headings (GitHub's slugs: lower case, punctuation dropped, spaces to '-');
- every page and image under docs/ is linked from the README or another page;
- the quick start's code block holds exactly two commands, and the second is the one ``.ci/run`` runs.

Plain text reading: no framework is imported, so this runs in every environment that collects it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 300

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"`+[^`]*`+")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|^//")


def _prose(path: Path) -> list[str]:
    """The lines outside fenced code blocks (a '#' in a bash block is a comment, not a heading)."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (word characters, '-' and spaces kept),
    each space a '-'."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets GitHub's '-1', '-2', ... suffixes."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose(path):
        if match := HEADING.match(line):
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The targets of the page's inline links and images and of its reference definitions, outside code."""
    targets = []
    for line in _prose(path):
        # a code span that shows link syntax is not a link; other code spans may be a link's text
        prose = CODE_SPAN.sub(lambda m: " " * len(m.group()) if "](" in m.group() else m.group(), line)
        targets += INLINE_LINK.findall(prose)
        if match := REFERENCE_LINK.match(line):
            targets.append(match.group(1))
    return targets


def relative_links(path: Path) -> list[tuple[Path, str]]:
    """(target file, anchor or '') for every link that stays in the repository."""
    found = []
    for target in links(path):
        if SCHEME.match(target):
            continue
        file, _, anchor = target.partition("#")
        found.append(((path.parent / file).resolve() if file else path, anchor))
    return found


def test_slug_follows_github():
    assert slug("Same weights, same numbers: what it takes") == "same-weights-same-numbers-what-it-takes"
    assert slug("convert, predict and --transform-input") == "convert-predict-and---transform-input"
    assert slug("d2l's three implementations, as the chapter writes them") == (
        "d2ls-three-implementations-as-the-chapter-writes-them")
    assert slug("Calibrated statistics in `compare`") == "calibrated-statistics-in-compare"


def test_link_reader_sees_links_and_skips_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n[a](a.md#x) ![img](i.png) `[not](code.md)` [web](https://example.com)\n"
                    "```bash\n# Not a heading\n[nor](this.md)\n```\n[ref]: b.md\n", encoding="utf-8")
    assert links(page) == ["a.md#x", "i.png", "https://example.com", "b.md"]
    assert anchors(page) == {"top"}


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, more than {README_MAX_LINES}: move detail into docs/")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_somewhere(page):
    broken = []
    for target, anchor in relative_links(page):
        if not target.exists():
            broken.append(f"{target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{target.relative_to(ROOT)}#{anchor}: no such heading")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: " + "; ".join(broken)


def test_every_docs_file_is_linked():
    linked = {target for page in PAGES for target, _ in relative_links(page)}
    unlinked = [path.name for path in sorted(DOCS.iterdir()) if path.is_file() and path.resolve() not in linked]
    assert not unlinked, f"docs/ files that no page links to: {', '.join(unlinked)}"


def _quick_start_commands() -> list[str]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("## Quick start")
    opening = next(i for i in range(start + 1, len(lines)) if FENCE.match(lines[i]))
    closing = next(i for i in range(opening + 1, len(lines)) if FENCE.match(lines[i]))
    block = "\n".join(lines[opening + 1:closing]).replace("\\\n", " ")
    return [line.strip() for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _ci_test_command() -> str:
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
                if line.startswith("python3 -m venv")]
    assert len(commands) == 1, f".ci/run: expected one 'python3 -m venv' line, found {len(commands)}"
    return commands[0]


def test_quick_start_has_two_commands_and_ci_runs_the_second():
    commands = _quick_start_commands()
    assert len(commands) == 2, f"README quick start: expected 2 commands, found {len(commands)}: {commands}"
    assert commands[1] == _ci_test_command(), "README quick start command 2 differs from what .ci/run runs"
    assert commands[1].endswith("-m pytest")
