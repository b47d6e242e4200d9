"""The table and the JSON file: each figure beside its baseline and their ratio."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    """One line of the table.

    `ratio` is always ours ÷ baseline: for throughput (`better="higher"`) below 1 means we do
    less than the bare path; for latency and memory (`better="lower"`) above 1 means we take
    more.
    """

    row: str
    metric: str
    ours: float
    baseline: float | None
    better: Literal["higher", "lower"]
    runs: int
    baseline_label: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return round(self.ours / self.baseline, 2)


@dataclass
class Report:
    mode: str
    machine: dict[str, Any]
    cores: str
    started: float = field(default_factory=time.time)
    figures: list[Figure] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)

    def fail(self, row: str, error: str) -> None:
        self.failures.append(f"{row}: {error}")

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "duration_s": round(time.time() - self.started, 1),
            "machine": self.machine,
            "cores": self.cores,
            "figures": [{**asdict(f), "ratio": f.ratio} for f in self.figures],
            "failures": self.failures,
            "notes": self.notes,
            "raw": self.raw,
        }

    def write(self, directory: Path = RESULTS_DIR) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(self.started))
        path = directory / f"{stamp}{'-quick' if self.mode == 'quick' else ''}.json"
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table_rows(report: Report) -> list[list[str]]:
    rows = []
    for f in report.figures:
        ratio = f.ratio
        rows.append(
            [
                f.row,
                f.metric,
                _num(f.ours),
                _num(f.baseline),
                "-" if ratio is None else f"{ratio:.2f}x",
                f.baseline_label,
                str(f.runs),
            ]
        )
    return rows


HEADERS = ["row", "metric", "ours", "baseline", "ours/base", "baseline is", "runs"]


def plain_table(report: Report) -> str:
    """A Markdown table (also what the README quotes)."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(report)]
    return "\n".join(lines)


def print_report(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    table = Table(title=f"make bench ({report.mode})", show_lines=False)
    for header in HEADERS:
        justify = "right" if header in ("ours", "baseline", "ours/base", "runs") else "left"
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for cells in table_rows(report):
        table.add_row(*cells)
    console.print(table)
    m = report.machine
    console.print(
        f"machine: {m['nproc']} cores, {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"Python {m['python']}, grpcio {m['grpcio']}"
    )
    console.print(f"cores: {report.cores}")
    for note in report.notes:
        console.print(f"note: {note}")
    for failure in report.failures:
        console.print(f"[red]FAILED[/red] {failure}")
