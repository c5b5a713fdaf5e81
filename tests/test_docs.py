"""The docs cannot drift: every MLproject parameter is documented with its default, every doc is reachable from
README, and every relative link points at a file (and a heading) that exists. Reads the files as a user does, not
through the generator (bertcls.config.generate) that writes them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MLPROJECT = yaml.safe_load((ROOT / "MLproject").read_text())
ENTRY_POINTS = sorted(MLPROJECT["entry_points"])


def _documented(job: str) -> dict[str, str]:
    """parameter -> documented default, from the table between <!-- params:job --> markers in any doc."""
    rows = {}
    for doc in DOCS.glob("*.md"):
        for block in re.findall(rf"<!-- params:{job} -->(.*?)<!-- /params:{job} -->", doc.read_text(), re.S):
            for name, default in re.findall(r"^\| `([a-z0-9_]+)` \| ([^|]*) \|", block, re.M):
                rows[name] = default.strip()
    return rows


def _as_documented(spec: dict) -> str:
    """How the docs spell an MLproject default: unset values as `unset`, sample caps as `0 (all)`."""
    if "default" not in spec:
        return "required"
    default = spec["default"]
    if default in ("none", "/dev/null"):
        return "unset"
    if spec["type"] == "float" and default == 0:
        return "0 (all)"
    return f"`{default}`"


@pytest.mark.parametrize("job", ENTRY_POINTS)
def test_every_mlproject_parameter_is_documented_with_its_default(job):
    documented = _documented(job)
    assert documented, f"no <!-- params:{job} --> table in docs/"
    for name, spec in MLPROJECT["entry_points"][job]["parameters"].items():
        assert name in documented, f"{job} parameter {name!r} is not documented in docs/"
        expected = _as_documented(spec)
        if expected == "0 (all)" and documented[name] in ("`0`", "`0.0`"):
            continue  # a plain zero default (freeze_layers, patience, trials, focal_gamma) reads as 0
        if expected == "unset" and documented[name] == "`none`":
            continue  # none is one of the option's choices (class_weights=none|balanced|list)
        if expected in ("unset", "0 (all)") and documented[name] == "as trained":
            continue  # evaluate's data options: unset means the training run's value
        assert documented[name] == expected, f"{job}.{name}: docs say {documented[name]}, MLproject {expected}"
    extra = set(documented) - set(MLPROJECT["entry_points"][job]["parameters"])
    assert not extra, f"docs document {job} parameters MLproject lacks: {sorted(extra)}"


def test_every_doc_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    unlinked = [doc.name for doc in DOCS.glob("*.md") if f"docs/{doc.name}" not in readme]
    assert not unlinked, f"README.md does not link {unlinked}"


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lowercased, punctuation dropped, spaces as hyphens, a repeated
    heading suffixed -1, -2; lines in fenced code blocks are not headings."""
    anchors: set[str] = set()
    fenced = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"#{1,6} (.+)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            suffixed, n = slug, 0
            while suffixed in anchors:
                n += 1
                suffixed = f"{slug}-{n}"
            anchors.add(suffixed)
    return anchors


@pytest.mark.parametrize("page", ["README.md", *(f"docs/{p.name}" for p in sorted(DOCS.glob("*.md")))])
def test_relative_links_resolve(page):
    """Every relative link names a file that exists and, with #anchor, a heading that file has."""
    text = (ROOT / page).read_text()
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if re.match(r"[a-z]+://", target) or (not target and not anchor):
            continue
        linked = (ROOT / page).parent / target if target else ROOT / page
        assert linked.exists(), f"{page} links {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page} links {target}#{anchor}, a heading {target or page} lacks"
