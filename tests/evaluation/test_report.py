"""`flowsteer eval` on a small real run: the report files, numbers recounted from the episodes,
valid plots, a self-contained HTML page, and the run's identity."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from flowsteer.evaluation.record import EpisodeRecord

CHECKERS = {"Test", "Review", "Verify"}


def _episodes(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]


def _mean(values):
    return sum(values) / len(values) if values else None


def _recount(episodes: list[dict]) -> dict:
    """The report's numbers, counted again here from the raw JSON lines (not via summarize)."""
    groups: dict = defaultdict(list)
    for e in episodes:
        groups[(e["system"], e["source"])].append(e)
    out = {}
    for (system, source), eps in groups.items():
        scored = [e for e in eps if e["skipped"] is None]
        played = [e for e in eps if e["finished"] is not None]
        shapes = Counter(e["dsl"] for e in eps if e["dsl"])

        def shortcut(dsl: str) -> bool:
            names = re.findall(r"\b[A-Z][A-Za-z]*\b", dsl)
            return len(names) < 3 or not CHECKERS & set(names)

        out[(system, source)] = {
            "episodes": len(eps),
            "skipped": len(eps) - len(scored),
            "accuracy": _mean([e["scores"][e["headline"]] for e in scored]),
            "turns": _mean([e["turns"] for e in eps]),
            "policy_tokens": _mean([e["policy_tokens"] for e in eps]),
            "backend_calls": _mean([e["backend_calls"] for e in eps]),
            "backend_tokens": _mean([e["backend_tokens"] for e in eps]),
            "finish_rate": _mean([float(e["finished"]) for e in played]),
            "shortcut_rate": _mean([float(shortcut(e["dsl"])) for e in played]),
            "shape_counts": sorted(shapes.values(), reverse=True)[:5],
            "metrics": {
                m: _mean([e["scores"][m] for e in scored])
                for m in (scored[0]["scores"] if scored else {})
            },
        }
    return out


def test_report_files_and_numbers_agree_with_the_episodes(report_run: Path):
    out = report_run
    for name in ("metrics.json", "report.md", "report.html", "episodes.jsonl", "fingerprint.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    episodes = _episodes(out)
    systems = metrics["systems"]
    assert list(systems) == ["policy", "untrained", "direct", "cot", "fixed"]
    recount = _recount(episodes)
    assert set(recount) == {(s, d) for s in systems for d in systems[s]["datasets"]}
    for (system, source), expected in recount.items():
        got = systems[system]["datasets"][source]
        for key, value in expected.items():
            if key == "shape_counts":
                assert [s["count"] for s in got["shapes"]] == value
            elif key == "metrics":
                assert got["metrics"] == pytest.approx(value)
            else:
                assert got[key] == pytest.approx(value), (system, source, key)
        accs = [d["accuracy"] for d in systems[system]["datasets"].values()]
        assert systems[system]["overall"]["accuracy"] == pytest.approx(sum(accs) / len(accs))
    # The scripted backend's "#### 18" is right for the first GSM8K task only.
    assert systems["direct"]["datasets"]["gsm8k"]["accuracy"] == pytest.approx(0.5)
    # Policy episodes keep every action and observation, and reward components.
    policy = [e for e in episodes if e["system"] == "policy"]
    assert len(policy) == 6 and all(e["turns"] == len(e["actions"]) for e in policy)
    assert all(len(e["observations"]) >= 1 and e["reward_components"] for e in policy)
    # QA reports both metrics, headline first.
    assert list(systems["direct"]["datasets"]["squad_v2"]["metrics"]) == ["f1", "em"]


def test_every_episode_of_every_system_is_on_the_same_tasks(report_run: Path):
    episodes = _episodes(report_run)
    tasks = defaultdict(set)
    for e in episodes:
        EpisodeRecord.from_dict(e)  # the stored schema reads back
        tasks[e["system"]].add((e["source"], e["task_id"]))
    assert len({frozenset(v) for v in tasks.values()}) == 1
    assert len(next(iter(tasks.values()))) == 6
    keys = [(e["system"], e["source"], e["task_id"]) for e in episodes]
    assert len(keys) == len(set(keys))


def test_plots_are_valid_pngs(report_run: Path):
    from PIL import Image

    plots = sorted((report_run / "plots").glob("*.png"))
    assert [p.name for p in plots] == ["accuracy.png", "cost.png", "reward_components.png"]
    for path in plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            image.load()
            assert image.size[0] > 100 and image.size[1] > 100


def test_html_is_self_contained_and_has_the_tables(report_run: Path):
    page = (report_run / "report.html").read_text()
    assert "<table>" in page and "Accuracy per dataset" in page
    for system in ("policy", "untrained", "direct", "cot", "fixed"):
        assert f'<th class="">{system}</th>' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?://""", page, re.IGNORECASE)
    assert not re.search(r"<(link|script)\b", page, re.IGNORECASE)
    assert page.count('src="data:image/png;base64,') == 3
    assert 'src="data:image/svg+xml;base64,' in page  # a workflow shape picture (fixed)
    assert "Plan -&gt; Programmer -&gt; Verify ? Revise : done -&gt; Format" in page


def test_html_renders_in_headless_chromium(report_run: Path, tmp_path: Path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed; the page is checked as text only")
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
         "--window-size=1200,1600", (report_run / "report.html").as_uri()],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    with Image.open(shot) as image:
        colours = image.convert("L").getextrema()
    assert colours[0] < 128 < colours[1], "the screenshot is blank"


def test_identity_and_top_shapes(report_run: Path, tiny_adapter: Path):
    metrics = json.loads((report_run / "metrics.json").read_text())
    identity = metrics["identity"]
    assert identity["adapter"] == str(tiny_adapter)
    assert identity["backend"]["class_path"] == "flowsteer.llm.scripted.ScriptedBackend"
    assert identity["sampling"]["max_turns"] == 2 and identity["seed"] == 0
    assert identity["version"] and identity["commit"]
    for ds in identity["datasets"]:
        assert ds["sha256"] == hashlib.sha256(Path(ds["path"]).read_bytes()).hexdigest()
    fixed = metrics["systems"]["fixed"]["datasets"]["gsm8k"]["shapes"]
    assert fixed[0]["dsl"] == "Plan -> Programmer -> Verify ? Revise : done -> Format"
    assert (report_run / fixed[0]["picture"]).read_text().startswith("<svg")
