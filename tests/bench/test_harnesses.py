"""Smoke tests: every benchmark runs end to end on a tiny setting and writes its report.

No timing is asserted (speed targets are judged by the benchmarks themselves); what is checked
is that each harness drives real servers, counts what it should and verifies what it claims.
"""

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bench.auth_bench import MODES, auth
from bench.driver import DriverConfig
from bench.engine_bench import engine
from bench.peers import peers
from bench.queue_bench import queue
from bench.report import Report
from bench.scenarios import flash_sale, inventory_stack, rate_sweep, steady
from bench.service_bench import service
from inventory import local_servers

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def postgres_admin() -> Iterator[str]:
    with local_servers.postgres_admin() as url:
        yield url


def written(report: Report, results_dir: Path) -> str:
    path = report.write()
    assert path.parent == results_dir
    text = path.read_text()
    assert "| Machine |" in text and "| Command |" in text
    for image in text.split("](")[1:]:
        assert (results_dir / image.split(")")[0]).stat().st_size > 0
    return text


def tables(text: str) -> list[list[dict[str, str]]]:
    """The markdown tables of a report, each as its rows keyed by column header."""
    found: list[list[dict[str, str]]] = []
    lines = text.splitlines()
    for index, line in enumerate(lines[:-1]):
        if line.startswith("| ") and lines[index + 1].startswith("|---"):
            headers = [cell.strip() for cell in line.strip("|").split("|")]
            rows: list[dict[str, str]] = []
            for row in lines[index + 2 :]:
                if not row.startswith("|"):
                    break
                cells = [cell.strip() for cell in row.strip("|").split("|")]
                rows.append(dict(zip(headers, cells, strict=True)))
            found.append(rows)
    return found


def number(cell: str) -> float:
    return float(cell.replace(",", "").strip("*"))


def column(text: str, header: str) -> list[float]:
    """Every value of the column `header`, in whichever table has it."""
    return [number(row[header]) for table in tables(text) for row in table if header in row]


def measure(text: str, name: str) -> float:
    """The value of a "measure | value" row."""
    [value] = [
        row["value"] for table in tables(text) for row in table if row.get("measure") == name
    ]
    return number(value)


def test_engine_harness_measures_every_size(results_dir: Path) -> None:
    text = written(engine([100, 300], holds=40, pipeline=10, rounds=1), results_dir)
    assert "| 100 | 40 |" in text and "| 300 | 40 |" in text
    assert "Hold cost in Redis at 300 seats vs 100 seats" in text
    for header in ("holds/s", "releases/s", "best-available holds/s"):
        assert len(column(text, header)) == 2 and min(column(text, header)) > 0, header


def test_queue_harness_measures_joins_holds_admission_and_fan_out(results_dir: Path) -> None:
    text = written(queue(300, 16, 6000, 1.0, 50, seats=1000, fan_out_seconds=1.0), results_dir)
    assert column(text, "calls") == [300, 300]
    assert "JoinQueue against the same burst straight to Hold, same run: calls/s x" in text
    assert column(text, "failed") == [0, 0]
    assert min(column(text, "calls/s")) > 0
    rows = {
        row["admission"]: row["value"]
        for table in tables(text)
        for row in table
        if "admission" in row
    }
    assert number(rows["measured over the window (per minute, Redis clock)"]) > 0
    fan_out = {
        row["WatchQueue fan-out"]: row["value"]
        for table in tables(text)
        for row in table
        if "WatchQueue fan-out" in row
    }
    assert number(fan_out["watchers"]) == 50 and number(fan_out["watchers failed"]) == 0
    # Every watcher got its first update (the harness waits for as many updates as watchers);
    # updates after that come only while admissions still move the line, which a slow run may not.
    assert number(fan_out["seconds to start them (until as many updates as watchers)"]) >= 0
    assert "updates delivered" in fan_out


def test_flash_sale_sells_every_seat_once(results_dir: Path, postgres_admin: str) -> None:
    config = DriverConfig("", [], 0, duration=30, processes=2, batch=10)
    text = written(
        flash_sale(config, workers=1, seats=120, buyers=400, admin_dsn=postgres_admin), results_dir
    )
    booked = next(line for line in text.splitlines() if line.startswith("| seats booked (Redis)"))
    # Seats released at the very end may find no buyer left: nearly all, not always all, sell.
    assert int(booked.split(" | ")[1].strip(" |")) >= 100
    assert "| failed operations | 0 |" in text
    assert "| seats sold twice (buyers' bookings) | 0 |" in text
    assert "| seats Postgres and Redis disagree on | 0 |" in text
    assert "| booking conflicts in Postgres | 0 |" in text
    assert "| verdict: zero double-booking | **met** |" in text
    assert measure(text, "hold attempts") > 0
    assert measure(text, "bookings confirmed to buyers") > 0
    assert measure(text, "outbox records") == measure(text, "bookings confirmed to buyers")
    compared = {
        row["compared with the reference"]: row
        for table in tables(text)
        for row in table
        if "compared with the reference" in row
    }
    assert number(compared["every buyer answered after (s)"]["reference"]) > 0


def test_steady_and_sweep_run(results_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.scenarios.EVENT_SEATS", 2_000)
    config = DriverConfig("", [], 2_000, duration=3, processes=1, batch=5)
    # No warm-up left out: 2,000 seats last the closed loop well under a second.
    text = written(steady(config, workers=1, warmup=0, expected_rate=100), results_dir)
    assert "| failed operations | 0 |" in text
    assert measure(text, "ops/s (mean)") > 0
    [rate] = [
        row
        for table in tables(text)
        for row in table
        if row.get("measure") == "ops/s (median of 1 s buckets)"
    ]
    assert number(rate["reference"]) > 0 and rate["project / reference"].startswith("x")
    report, _best = rate_sweep(replace(config, duration=3), 1, [200], warmup=1)
    sweep = written(report, results_dir)
    assert "| 200 |" in sweep
    assert column(sweep, "achieved ops/s")[0] > 0


def test_service_harness_compares_with_the_empty_handler(
    results_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bench.service_bench.EVENT_SEATS", 30_000)
    text = written(service(1, 1, duration=2, concurrency=4, rounds=1), results_dir)
    assert "| 1 | Hold |" in text and "| 1 | empty |" in text
    calls = column(text, "calls/s")
    assert len(calls) == 2 and min(calls) > 0


def test_auth_harness_runs_every_mode_with_its_key(
    results_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bench.auth_bench.EVENT_SEATS", 5_000)
    text = written(auth(1, 1, duration=3, rounds=1), results_dir)
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| 1 | ")]
    assert {(row[1], row[2]) for row in rows} == {
        (load, mode) for load in ("unary Hold", "Execute") for mode in MODES
    }
    # No call failed: the keyed servers took the bench's key, and its rate refused nothing.
    assert all(row[6] == "0" for row in rows), rows


def test_peers_count_partial_holds(results_dir: Path, postgres_admin: str) -> None:
    report = peers(1.0, concurrency=8, seats=40, rounds=1, admin_dsn=postgres_admin)
    text = written(report, results_dir)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if " | " in line}
    assert {"engine (Lua hold)", "SET NX EX per seat", "Postgres FOR UPDATE"} <= rows.keys()
    # The engine never holds part of a request: its partial-hold column is zero.
    assert rows["engine (Lua hold)"].split(" | ")[5] == "0"
    assert min(column(text, "holds/s (median)")) > 0
    assert min(column(text, "granted")) > 0


def test_locustfile_runs_and_judges_thresholds() -> None:
    with inventory_stack(1, {}) as stack:
        base = [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py")]
        base += ["--headless", "-u", "4", "-r", "4", "-t", "3s", "--host", stack.target]
        base += ["--lml-event", "smoke", "--lml-seats", "300", "--only-summary"]
        # At least 1 op/s: a run that did nothing does not meet its thresholds.
        lenient = subprocess.run(
            [*base, "--lml-p99-ms", "100000", "--lml-min-ops", "1"], capture_output=True, text=True
        )
        assert lenient.returncode == 0, lenient.stderr[-2000:]
        assert "all thresholds met" in lenient.stderr
        strict = subprocess.run([*base, "--lml-min-ops", "1e9"], capture_output=True, text=True)
        assert strict.returncode == 1
        assert "threshold missed" in strict.stderr
