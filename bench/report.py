"""A benchmark report: markdown with the machine, versions and exact command, plus PNG charts."""

import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bench.samples import KIND_NAMES, Samples

RESULTS = Path(__file__).resolve().parent / "results"
PERCENTILES = (50, 90, 99, 99.9)
_PACKAGES = ("grpcio", "redis", "hiredis", "protobuf", "asyncpg", "locust")
# Taken when the harness starts (bench.run imports this first): the machine is shared, and what
# else ran during a measure is what makes its absolute figures differ from another run's.
_LOAD_AT_START = os.getloadavg()


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _output(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "not installed"


# The code measured: the commit when the harness started, "-dirty" when files differed from it.
_COMMIT_AT_START = _output(["git", "describe", "--always", "--dirty", "--abbrev=7"])


def _load(averages: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in averages)


def machine() -> str:
    """CPU model, cores, kernel, and the load average when the harness started and now."""
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"load average (1/5/15 min) at start {_load(_LOAD_AT_START)}, "
        f"at the end {_load(os.getloadavg())}"
    )


def environment() -> list[tuple[str, str]]:
    versions = []
    for package in _PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return [
        ("Machine", machine()),
        ("Python", platform.python_version()),
        ("Redis", _output(["redis-server", "--version"]).split(" sha=")[0]),
        ("Packages", ", ".join(versions)),
        ("Commit", _COMMIT_AT_START or "unknown"),
        ("Command", f"`{shlex.join(['python', '-m', 'bench.run', *sys.argv[1:]])}`"),
    ]


@dataclass
class Report:
    scenario: str
    title: str
    stamp: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    lines: list[str] = field(default_factory=list)
    # LML_BENCH_RESULTS redirects reports and charts, as the smoke tests do.
    directory: Path = field(
        default_factory=lambda: Path(os.environ.get("LML_BENCH_RESULTS", str(RESULTS)))
    )

    @property
    def name(self) -> str:
        return f"{self.stamp}-{self.scenario}"

    def text(self, *lines: str) -> None:
        self.lines.extend([*lines, ""])

    def table(self, headers: list[str], rows: list[list[object]]) -> None:
        self.lines.append("| " + " | ".join(headers) + " |")
        self.lines.append("|" + "---|" * len(headers))
        for row in rows:
            self.lines.append("| " + " | ".join(_cell(value) for value in row) + " |")
        self.lines.append("")

    def chart(self, suffix: str, figure: Figure, caption: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.name}-{suffix}.png"
        figure.savefig(path, dpi=72)
        plt.close(figure)
        self.text(f"![{caption}]({path.name})")

    def write(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        header = [f"# {self.title}", "", f"Run at {self.stamp} UTC.", ""]
        header += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in environment()), ""]
        path = self.directory / f"{self.name}.md"
        path.write_text("\n".join(header + self.lines))
        return path


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def throughput_figure(samples: Samples, seconds: int, title: str) -> Figure:
    figure, axis = plt.subplots(figsize=(6.4, 3.0))
    axis.plot(range(seconds), samples.per_second(seconds), label="all", color="black")
    for kind, name in enumerate(KIND_NAMES):
        of_kind = samples.kind == kind
        if of_kind.any():
            axis.plot(range(seconds), samples.of(of_kind).per_second(seconds), label=name, lw=1)
    axis.set(xlabel="seconds", ylabel="operations / s", title=title)
    axis.legend(fontsize=7, ncol=5)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def latency_figure(samples: Samples, title: str) -> Figure:
    figure, axis = plt.subplots(figsize=(6.4, 3.0))
    kinds = [k for k in range(len(KIND_NAMES)) if (samples.kind == k).any()]
    width = 0.8 / len(PERCENTILES)
    for index, q in enumerate(PERCENTILES):
        values = [samples.percentile_ms(q, kind) for kind in kinds]
        axis.bar(np.arange(len(kinds)) + index * width, values, width, label=f"p{q:g}")
    axis.set_xticks(np.arange(len(kinds)) + width * 1.5, [KIND_NAMES[k] for k in kinds])
    axis.axhline(10, color="red", linewidth=0.8, linestyle="--", label="10 ms")
    axis.set(ylabel="latency (ms)", title=title)
    axis.legend(fontsize=7, ncol=5)
    axis.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    return figure


def sweep_figure(measured: list[tuple[int, float, float]]) -> Figure:
    figure, axis = plt.subplots(figsize=(6.4, 3.0))
    axis.plot([m[0] for m in measured], [m[2] for m in measured], marker="o", label="p99")
    axis.axhline(10, color="red", linewidth=0.8, linestyle="--", label="10 ms")
    axis.set(xlabel="offered ops/s", ylabel="p99 (ms)", title="p99 latency by offered rate")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def latency_rows(samples: Samples, duration: float) -> list[list[object]]:
    """Per operation kind: count, rate, percentiles, rejected and failed."""
    from bench.samples import FAILED, UNAVAILABLE

    rows: list[list[object]] = []
    for kind, name in [(None, "all"), *enumerate(KIND_NAMES)]:
        count = samples.count if kind is None else int((samples.kind == kind).sum())
        if not count:
            continue
        rows.append(
            [
                name,
                count,
                count / duration,
                *(samples.percentile_ms(q, kind) for q in PERCENTILES),
                samples.outcomes(UNAVAILABLE, kind),
                samples.outcomes(FAILED, kind),
            ]
        )
    return rows


LATENCY_HEADERS = [
    "operation",
    "count",
    "ops/s",
    *(f"p{q:g} ms" for q in PERCENTILES),
    "seats unavailable",
    "failed",
]
