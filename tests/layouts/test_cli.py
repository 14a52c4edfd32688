"""`lml-layouts` end to end: generate, import, validate, publish, deploy, export, create-event."""

import json
import re
import uuid
from pathlib import Path

from click.testing import CliRunner, Result

from inventory.layouts.cli import main
from inventory.local_servers import RedisServer

OPERA_PRICES = ["--price", "A=12000", "--price", "B=8000", "--price", "C=4500"]
OPERA_PRICES += ["--price", "D=2000", "--price", "BOX=15000"]


def run(dsn: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--postgres-url", dsn, *args], catch_exceptions=False)


def test_the_opera_house_from_file_to_event(
    postgres_dsn: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    layout_id = str(uuid.uuid4())
    source = tmp_path / "opera.json"
    generated = run(postgres_dsn, "generate-opera", "--out", str(source), "--layout-id", layout_id)
    assert generated.exit_code == 0, generated.output
    assert json.loads(source.read_text())["id"] == layout_id

    checked = run(postgres_dsn, "validate", "--file", str(source))
    assert checked.exit_code == 0 and "valid" in checked.output

    imported = run(postgres_dsn, "import", str(source))
    assert imported.exit_code == 0, imported.output
    assert imported.output.startswith(f"layout {layout_id} version 1: draft")

    published = run(postgres_dsn, "publish", layout_id)
    assert published.exit_code == 0, published.output
    layout_hash = re.findall(r"hash ([0-9a-f]{64})", published.output)[0]

    refused = run(postgres_dsn, "export", layout_id, "--out", str(tmp_path / "cdn"))
    assert refused.exit_code == 1 and "is not deployed" in refused.output

    assert run(postgres_dsn, "deploy", layout_id).exit_code == 0
    exported = run(postgres_dsn, "export", layout_id, "--out", str(tmp_path / "cdn"))
    assert exported.exit_code == 0, exported.output
    assert Path(exported.output.strip()) == tmp_path / "cdn" / f"{layout_hash}.json"

    event = ["create-event", layout_id, "--hash", layout_hash, "--event-id", "tosca-cli"]
    event += ["--redis-url", redis_server.url, *OPERA_PRICES]
    created = run(postgres_dsn, *event)
    assert created.exit_code == 0, created.output
    assert re.match(r"event tosca-cli: \d{4} seats, created", created.output)

    wrong_hash = run(postgres_dsn, *[("0" * 64 if arg == layout_hash else arg) for arg in event])
    assert wrong_hash.exit_code == 1 and "no version with hash" in wrong_hash.output


def test_validate_lists_every_problem(postgres_dsn: str, tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    source.write_text(
        "section,row,number,x,y,category,companion\n"
        "stalls,A,1,0.1,0.1,A,\n"
        "stalls,A,2,1.5,0.1,A,yes\n"
    )
    layout_id = str(uuid.uuid4())
    imported = run(
        postgres_dsn, "import", str(source), "--csv", "--venue", "Hall", "--layout-id", layout_id
    )
    assert imported.exit_code == 0, imported.output
    checked = run(postgres_dsn, "validate", layout_id)
    assert checked.exit_code == 1
    assert checked.output.splitlines() == [
        "section 'stalls' row 'A' seat '2': x 1.5 is outside [0, 1]",
        "section 'stalls' row 'A' seat '2' is a companion seat with no wheelchair space beside it",
    ]
    refused = run(postgres_dsn, "publish", layout_id)
    assert refused.exit_code == 1 and "x 1.5 is outside" in refused.output


def test_errors_are_messages_not_tracebacks(postgres_dsn: str, tmp_path: Path) -> None:
    unknown = run(postgres_dsn, "publish", str(uuid.uuid4()))
    assert unknown.exit_code == 1 and "does not exist" in unknown.output
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert "not JSON" in run(postgres_dsn, "import", str(broken)).output
    no_venue = run(postgres_dsn, "import", str(broken), "--csv")
    assert no_venue.exit_code == 2 and "--venue is required" in no_venue.output
    unreachable = run("postgresql://postgres@127.0.0.1:1/none", "publish", str(uuid.uuid4()))
    assert unreachable.exit_code == 1 and "database:" in unreachable.output
