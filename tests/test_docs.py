"""README.md and docs/: every relative link and image exists, every page is reachable, the command reference is current."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from contrafeat.cli_reference import cli_reference

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
README_LIMIT_BYTES = 12 * 1024


def markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def relative_targets(page: Path) -> list[str]:
    """Link and image targets of a page that point into the repository (no URLs, no bare anchors)."""
    targets = [match.group(1) for match in LINK.finditer(page.read_text(encoding="utf-8"))]
    return [target.split("#")[0] for target in targets if not re.match(r"[a-z]+:", target) and not target.startswith("#")]


def test_link_pattern_reads_links_and_images(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("see [a](docs/a.md#part), ![b](b.png), [c](https://x.org/c), [d](#top)\n")
    assert relative_targets(page) == ["docs/a.md", "b.png"]


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_and_image_exists(page: Path) -> None:
    missing = [target for target in relative_targets(page) if not (page.parent / target).exists()]
    assert missing == [], f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    reached, queue = set(), [ROOT / "README.md"]
    while queue:
        page = queue.pop()
        for target in relative_targets(page):
            linked = (page.parent / target).resolve()
            if linked.suffix == ".md" and linked.is_file() and linked not in reached:
                reached.add(linked)
                queue.append(linked)
    unreached = [page.name for page in markdown_pages()[1:] if page.resolve() not in reached]
    assert unreached == []


def test_readme_is_short_and_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= README_LIMIT_BYTES
    commands = re.search(r"```bash\n(.*?)```", text, re.S).group(1).splitlines()
    assert commands[0].startswith("bash setup.sh && .venv/bin/contrafeat discover")
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert commands[1].split("#")[0].strip() == ci_command


def test_command_reference_is_current() -> None:
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert page == cli_reference(), "docs/cli.md is stale: run `python -m contrafeat.cli_reference > docs/cli.md`"
