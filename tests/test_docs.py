"""The repository stands alone: every Markdown link points at a file inside it (no `../shared`, no web
links), anchors name real headings, and every page of docs/ is reachable from docs/README.md."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP_DIRS = {"node_modules", "__pycache__", "build", "dist", "venv"}

_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_AUTO = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]+)>")
_HTML = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")


def markdown_files(root: Path = ROOT) -> list[Path]:
    """Every .md file of the repository (hidden folders, virtual environments and build output left out)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS
                             and not d.endswith(".egg-info"))
        out += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".md")]
    return out


def _outside_fences(text: str) -> list[str]:
    """The lines of Markdown `text` outside fenced code blocks, HTML comments removed."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    lines, fence = [], None
    for line in text.splitlines():
        m = re.match(r"^\s{0,3}(`{3,}|~{3,})", line)
        if m:
            if fence is None:
                fence = m.group(1)[0] * 3
            elif line.strip().startswith(fence):
                fence = None
        elif fence is None:
            lines.append(line)
    return lines


def _prose(text: str) -> list[str]:
    """The lines outside fenced code, inline code removed too."""
    return [re.sub(r"(`+)(?:(?!\1).)+?\1", "", line) for line in _outside_fences(text)]


def links(path: Path) -> list[str]:
    """Link targets of a Markdown file: inline links and images, reference definitions, autolinks and
    HTML href/src attributes, outside code."""
    prose = "\n".join(_prose(path.read_text(encoding="utf-8")))
    found = []
    for rx in (_INLINE, _REFDEF, _AUTO, _HTML):
        found += [m.group(1) for m in rx.finditer(prose)]
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: rendered text, lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link or image keeps its text
    text = re.sub(r"[`*~]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    out: set[str] = set()
    for heading in _heading_lines(path):
        base = slug(heading)
        name, n = base, 1
        while name in out:
            name, n = f"{base}-{n}", n + 1
        out.add(name)
    return out


def _heading_lines(path: Path) -> list[str]:
    """The text of every ATX heading outside fenced code (inline code kept: it is part of the anchor)."""
    return [m.group(1) for m in map(_HEADING.match, _outside_fences(path.read_text(encoding="utf-8"))) if m]


def problems(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the links of one Markdown file, one message each."""
    out = []
    root = root.resolve()
    for target in links(path):
        where = f"{path.relative_to(root)}: link {target!r}"
        if not target:
            out.append(f"{where} is empty")
            continue
        if "../shared" in target:
            out.append(f"{where} points at ../shared, outside the repository; link the page in docs/ instead")
            continue
        if _SCHEME.match(target):
            out.append(f"{where} leaves the repository (a web or other URL); the repository must stand alone")
            continue
        file_part, _, fragment = target.partition("#")
        if file_part.startswith("/"):
            out.append(f"{where} is absolute; use a path relative to {path.relative_to(root)}")
            continue
        dest = (path.parent / file_part).resolve() if file_part else path.resolve()
        try:
            dest.relative_to(root)
        except ValueError:
            out.append(f"{where} resolves to {dest}, outside the repository")
            continue
        if not dest.exists():
            out.append(f"{where}: no such file {dest.relative_to(root)}")
            continue
        if fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            out.append(f"{where}: {dest.relative_to(root)} has no heading with anchor #{fragment}")
    return out


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_stays_inside_the_repository(path):
    assert problems(path) == []


def test_the_pages_that_must_stand_alone_are_checked():
    checked = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "ARCHITECTURE.md", "BENCHMARKS.md", "docs/README.md"} <= checked
    assert len([c for c in checked if c.startswith("docs/")]) >= 8


def test_every_docs_page_is_linked_from_the_docs_index():
    index = DOCS / "README.md"
    linked = {(index.parent / t.partition("#")[0]).resolve() for t in links(index) if not _SCHEME.match(t)}
    pages = {p.resolve() for p in DOCS.rglob("*.md") if p != index}
    assert pages, "docs/ has no pages"
    missing = sorted(str(p.relative_to(ROOT)) for p in pages - linked)
    assert missing == [], f"docs/README.md does not link {missing}"


def test_readme_and_architecture_send_readers_to_docs():
    for name in ("README.md", "ARCHITECTURE.md"):
        targets = [(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / name) if not _SCHEME.match(t)]
        assert (DOCS / "README.md").resolve() in targets, f"{name} does not link docs/README.md"


_SHARED_DOCS = re.compile(r"\.\./shared/(?:DESIGN\.md|STYLE\.md|papers)")


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_sends_readers_to_the_shared_design(path):
    """Not even as plain text or code: the contracts a user needs are in docs/ (../shared/assets, the
    optional test models, may still be named)."""
    hits = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if _SHARED_DOCS.search(line)]
    assert hits == [], f"{path.relative_to(ROOT)} names ../shared documents: {hits[:3]}"


def test_the_checker_finds_what_is_wrong(tmp_path):
    """The checks above can fail: a file with every kind of bad link gets a message for each, and links
    inside code or comments are not links."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Framing: `union` and `track`\n\n## A page\n")
    bad = tmp_path / "README.md"
    bad.write_text(
        "[design](../shared/DESIGN.md) and [web](https://example.com/x) and <https://example.org>\n"
        "[gone](docs/missing.md) [abs](/docs/page.md) [wrong anchor](docs/page.md#nope)\n"
        "![picture](../outside.png) <a href=\"../../etc/passwd\">x</a>\n"
        "[ref]: ../shared/STYLE.md\n"
        "[fine](docs/page.md#framing-union-and-track) [fine too](docs/page.md#a-page-1) [self](#title)\n"
        "`[in code](../shared/X.md)`\n<!-- [in a comment](../shared/Y.md) -->\n"
        "```\n[in a fence](../shared/Z.md)\n```\n# Title\n")
    found = problems(bad, tmp_path)
    assert len(found) == 9, found
    for what in ("../shared/DESIGN.md", "https://example.com/x", "https://example.org", "docs/missing.md",
                 "/docs/page.md", "#nope", "../outside.png", "../../etc/passwd", "../shared/STYLE.md"):
        assert sum(what in msg for msg in found) == 1, (what, found)
    assert not any("X.md" in m or "Y.md" in m or "Z.md" in m for m in found)
