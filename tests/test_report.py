"""report.html: well-formed, self-contained, every section present; summary.md; the CLI."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from selfdistill.cli import main
from selfdistill.errors import DataError
from selfdistill.evaluation import run_experiment
from selfdistill.report import load_run, write_report
from selfdistill.report.outputs import OutputIndex, featured_output
from selfdistill.report.sections import SECTION_IDS
from selfdistill.report.tables import headline_rows, markdown_table
from selfdistill.rundir.read import read_run_parquet
from tiny_experiment import tiny_config

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Checker(HTMLParser):
    """Tracks open tags, ids, and every src / href value."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("src", "href", "srcset", "action") and value is not None:
                self.links.append(value)
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    cfg = tiny_config(methods=["majority", "baseline", "born_again", "lightgbm"])
    out = tmp_path_factory.mktemp("report") / "run"
    run_experiment(cfg, out_dir=out, workers=1)
    write_report(out)
    return out


@pytest.fixture(scope="module")
def checked(run_dir: Path) -> tuple[str, Checker]:
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    checker = Checker()
    checker.feed(text)
    checker.close()
    return text, checker


def test_html_is_well_formed(checked: tuple[str, Checker]) -> None:
    text, checker = checked
    assert text.startswith("<!DOCTYPE html>")
    assert checker.errors == []
    assert checker.stack == []


def test_html_references_no_external_url(checked: tuple[str, Checker]) -> None:
    _, checker = checked
    external = [v for v in checker.links if re.match(r"^\s*(https?:)?//", v, re.I)]
    assert external == []
    assert all(v.startswith("#") or v.startswith("data:image/png;base64,")
               for v in checker.links)
    assert "<script" not in checked[0].lower()
    assert "<link" not in checked[0].lower()  # no stylesheet pulled from anywhere


def test_every_section_is_present_with_content(checked: tuple[str, Checker]) -> None:
    text, checker = checked
    for sid, title in SECTION_IDS:
        assert sid in checker.ids, sid
        body = text.split(f'<section id="{sid}">', 1)[1].split("</section>", 1)[0]
        assert f"<h2>{title}</h2>" in body
        assert len(body) > len(title) + 40, sid


def test_figures_are_embedded_pngs(checked: tuple[str, Checker]) -> None:
    _, checker = checked
    assert len(checker.images) >= 5  # equity, generations, reliability, regimes, AUROC
    for src in checker.images:
        data = base64.b64decode(src.removeprefix("data:image/png;base64,"))
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_shows_intervals_and_verdicts(checked: tuple[str, Checker]) -> None:
    text, _ = checked
    results = text.split('<section id="results">', 1)[1].split("</section>", 1)[0]
    # the mean over its interval [lo, hi]
    assert re.search(r"\d\.\d{3}<br><span class=\"ci\">\[-?\d\.\d{3}, -?\d\.\d{3}\]", results)
    assert "vs baseline" in results and "vs lightgbm" in results  # noqa: PT018
    assert "no significant difference" in results
    for method in ("baseline", "born_again_selected", "lightgbm", "buy_and_hold", "random"):
        assert f"<td>{method}</td>" in results


def test_summary_markdown_has_the_headline_table(run_dir: Path) -> None:
    summary = (run_dir / "summary.md").read_text(encoding="utf-8")
    header, rows = headline_rows(load_run(run_dir).metrics)
    assert markdown_table(header, rows) in summary
    assert "| method | member | cells |" in summary
    assert "lightgbm" in summary


def test_featured_output_is_chosen_on_validation_not_test() -> None:
    def agg(method: str, split: str, nll: float) -> dict[str, object]:
        return {"aggregate": True, "method": method, "generation": None, "split": split,
                "nll": {"mean": nll, "ci_low": None, "ci_high": None, "n": 1}}

    metrics = {"records": [agg("baseline", "val", 1.00), agg("baseline", "test", 0.50),
                           agg("lightgbm", "val", 0.90), agg("lightgbm", "test", 2.00),
                           agg("majority", "val", 0.10)]}
    assert featured_output(OutputIndex.from_records(metrics["records"])) == ("lightgbm", "-")


def test_cli_report_reads_only_the_run_directory(run_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    moved = tmp_path / "elsewhere"
    shutil.copytree(run_dir, moved)
    for name in ("report.html", "summary.md", "backtest.parquet"):
        (moved / name).unlink()  # a run without a backtest still reports
    assert main(["report", str(moved)]) == 0
    assert (moved / "summary.md").is_file()
    text = (moved / "report.html").read_text(encoding="utf-8")
    assert "The backtest is off" in text
    assert str(run_dir) not in text
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "content"), [
    ("metrics.json", b"{not json"),
    ("metrics.json", b"[1, 2]"),
    ("predictions.parquet", b""),
    ("prices.parquet", b"PAR1 truncated"),
    ("backtest.parquet", b"\x00" * 16),
    ("config.yaml", b"a: [b"),
])
def test_a_damaged_run_file_is_named_in_one_line(run_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 name: str, content: bytes) -> None:
    damaged = tmp_path / "run"
    shutil.copytree(run_dir, damaged)
    (damaged / name).write_bytes(content)
    assert main(["report", str(damaged)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: '{damaged / name}' cannot be read (")
    assert "the run directory is damaged" in err
    assert err.count("\n") == 1


def test_a_damaged_file_keeps_the_readers_error_as_its_cause(run_dir: Path,
                                                              tmp_path: Path) -> None:
    # the one-line message keeps the reader's first line; --debug shows the rest (where)
    damaged = tmp_path / "run"
    shutil.copytree(run_dir, damaged)
    (damaged / "config.yaml").write_bytes(b"a: [b")
    with pytest.raises(DataError) as info:
        load_run(damaged)
    assert isinstance(info.value.__cause__, yaml.YAMLError)
    (damaged / "predictions.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(DataError) as info:
        read_run_parquet(damaged / "predictions.parquet")
    assert isinstance(info.value.__cause__, OSError | ValueError)


def test_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser")
                    if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no chromium on PATH")
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", f"--screenshot={shot}",
                    "--window-size=1280,4000", (run_dir / "report.html").as_uri()],
                   check=True, timeout=120, capture_output=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
