from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def results_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the harnesses write their reports in a test: the test's own directory."""
    results = tmp_path / "results"
    monkeypatch.setenv("LML_BENCH_RESULTS", str(results))
    return results
