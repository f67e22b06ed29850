"""The repository stands on its own: design citations resolve, links exist, the license matches."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DESIGN = REPO / "docs" / "design.md"
_SOURCES = ("flowsteer", "lightning_modules", "datamodules", "callbacks", "bench", "tests")


def _texts() -> dict[Path, str]:
    files = [REPO / "README.md"]
    for top in _SOURCES:
        for path in (REPO / top).rglob("*"):
            if path.suffix in (".py", ".md", ".yaml", ".yml") and path.is_file():
                files.append(path)
    return {p: p.read_text(encoding="utf-8", errors="replace") for p in files}


def test_every_design_citation_names_a_section_of_the_repos_design_notes():
    sections = set(re.findall(r"^## (\d+)\. ", DESIGN.read_text(encoding="utf-8"), re.M))
    assert sections >= {"1", "2", "3", "4", "5", "6", "7", "8", "9"}
    bad = []
    for path, text in _texts().items():
        if path == Path(__file__):
            continue
        for m in re.finditer(r"(\S*)DESIGN\.md", text):
            bad.append(f"{path.relative_to(REPO)}: cites {m.group(0)!r} (use docs/design.md §N)")
        for m in re.finditer(r"docs/design\.md §(\d+)", text):
            if m.group(1) not in sections:
                bad.append(f"{path.relative_to(REPO)}: docs/design.md has no §{m.group(1)}")
    assert bad == []


def test_readme_links_point_inside_the_repository():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path = (REPO / target).resolve()
        assert REPO in path.parents and path.exists(), f"README links {target!r}"


def test_the_license_file_is_the_license_setup_cfg_declares():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cfg["metadata"]["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    for clause in ("1. Definitions.", "4. Redistribution.", "9. Accepting Warranty"):
        assert clause in text, clause
    assert "END OF TERMS AND CONDITIONS" in text and len(text.split()) > 1500
