"""`lml-layouts`: import, validate, publish, deploy and export venue layouts; create events."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import click
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from inventory.engine import Inventory
from inventory.layouts import validation
from inventory.layouts.backends import Backends, open_backends
from inventory.layouts.canonical import canonical_json, content
from inventory.layouts.errors import LayoutError, LayoutInvalid
from inventory.layouts.events import EventFromLayout, create_event_from_layout
from inventory.layouts.export import write_export
from inventory.layouts.importing import from_csv, from_json
from inventory.layouts.model import Layout, Viewport
from inventory.layouts.opera import DEFAULT_ID, opera_house
from inventory.redis_client import connect

T = TypeVar("T")


def _run(ctx: click.Context, work: Callable[[Backends], Awaitable[T]]) -> T:
    """Runs `work` against the configured stores, turning refusals into clean CLI errors."""

    async def main() -> T:
        async with open_backends(ctx.obj["postgres_url"], ctx.obj["mongo_url"]) as backends:
            return await work(backends)

    try:
        return asyncio.run(main())
    except LayoutError as error:
        raise click.ClickException(str(error)) from error
    except asyncpg.UndefinedTableError as error:
        raise click.ClickException(
            f"{error}: apply the schema migrations first (lml-worker migrate)"
        ) from error
    except (OSError, asyncpg.PostgresError, RedisError, PyMongoError) as error:
        raise click.ClickException(f"database: {error}") from error


@click.group()
@click.option(
    "--postgres-url",
    envvar="LML_POSTGRES_URL",
    default="postgresql://postgres@127.0.0.1:5432/lml",
    show_default=True,
    help="Events always, layouts unless --mongo-url. Also LML_POSTGRES_URL.",
)
@click.option(
    "--mongo-url",
    envvar="LML_MONGO_URL",
    default=None,
    help="Keep layouts in MongoDB (LML_MONGO_URL).",
)
@click.pass_context
def main(ctx: click.Context, postgres_url: str, mongo_url: str | None) -> None:
    """LML venue layouts."""
    ctx.obj = {"postgres_url": postgres_url, "mongo_url": mongo_url}


_SIZE = click.FloatRange(min=0, min_open=True)
layout_id_argument = click.argument("layout_id", type=click.UUID)
version_option = click.option("--version", type=click.IntRange(min=1), help="Default: latest.")


def _read_layout(
    path: Path,
    as_csv: bool,
    layout_id: uuid.UUID | None,
    venue: str | None,
    width: float,
    height: float,
) -> Layout:
    if not as_csv:
        return from_json(path.read_bytes())
    if venue is None:
        raise click.UsageError("--venue is required with --csv")
    viewport = Viewport(width=width, height=height)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise LayoutInvalid([f"{path} is not UTF-8 text: {error}"]) from error
    return from_csv(text, layout_id or uuid.uuid4(), venue, viewport)


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--csv", "as_csv", is_flag=True, help="PATH is a CSV of seats (see importing.py).")
@click.option("--layout-id", type=click.UUID, help="CSV only; default: a new UUID.")
@click.option("--venue", help="CSV only: the venue's name.")
@click.option("--width", default=1000.0, show_default=True, type=_SIZE, help="CSV: viewport width.")
@click.option(
    "--height", default=1000.0, show_default=True, type=_SIZE, help="CSV: viewport height."
)
@click.pass_context
def import_(
    ctx: click.Context,
    path: Path,
    as_csv: bool,
    layout_id: uuid.UUID | None,
    venue: str | None,
    width: float,
    height: float,
) -> None:
    """Store a layout from JSON or CSV as a new draft version."""
    try:
        layout = _read_layout(path, as_csv, layout_id, venue, width, height)
    except LayoutError as error:
        raise click.ClickException(str(error)) from error
    draft = _run(ctx, lambda b: b.layouts.add(layout))
    click.echo(f"layout {draft.id} version {draft.version}: draft")
    found = validation.problems(draft)
    if found:
        click.echo(f"it cannot be published yet ({len(found)} problem(s); see validate)", err=True)


@main.command()
@click.argument("layout_id", type=click.UUID, required=False)
@version_option
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Validate a JSON layout file instead of a stored layout.",
)
@click.pass_context
def validate(
    ctx: click.Context, layout_id: uuid.UUID | None, version: int | None, path: Path | None
) -> None:
    """Check a layout against every rule; exit status 1 if any is broken."""
    if (layout_id is None) == (path is None):
        raise click.UsageError("give either LAYOUT_ID or --file")
    if path is not None:
        try:
            layout = from_json(path.read_bytes())
        except LayoutError as error:
            raise click.ClickException(str(error)) from error
    else:
        assert layout_id is not None
        layout = _run(ctx, lambda b: b.layouts.store.get(layout_id, version))
    found = validation.problems(layout)
    for problem in found:
        click.echo(problem)
    if found:
        raise SystemExit(1)
    click.echo(f"layout {layout.id} version {layout.version}: valid")


@main.command()
@layout_id_argument
@version_option
@click.pass_context
def publish(ctx: click.Context, layout_id: uuid.UUID, version: int | None) -> None:
    """Validate a draft and freeze it; prints its hash."""
    layout = _run(ctx, lambda b: b.layouts.publish(layout_id, version))
    click.echo(f"layout {layout.id} version {layout.version}: published, hash {layout.hash}")


@main.command()
@layout_id_argument
@version_option
@click.pass_context
def deploy(ctx: click.Context, layout_id: uuid.UUID, version: int | None) -> None:
    """Make a published layout available for events."""
    layout = _run(ctx, lambda b: b.layouts.deploy(layout_id, version))
    click.echo(f"layout {layout.id} version {layout.version}: deployed, hash {layout.hash}")


@main.command()
@layout_id_argument
@version_option
@click.pass_context
def archive(ctx: click.Context, layout_id: uuid.UUID, version: int | None) -> None:
    """Retire a published or deployed layout (its events go on)."""
    layout = _run(ctx, lambda b: b.layouts.archive(layout_id, version))
    click.echo(f"layout {layout.id} version {layout.version}: archived")


@main.command()
@layout_id_argument
@version_option
@click.option(
    "--out",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write to.",
)
@click.pass_context
def export(ctx: click.Context, layout_id: uuid.UUID, version: int | None, directory: Path) -> None:
    """Write a deployed layout's static JSON as <hash>.json (ETag: the hash)."""

    async def work(backends: Backends) -> Path:
        return write_export(await backends.layouts.store.get(layout_id, version), directory)

    click.echo(str(_run(ctx, work)))


@main.command("generate-opera")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout.")
@click.option("--layout-id", type=click.UUID, default=str(DEFAULT_ID), show_default=True)
def generate_opera(out: Path | None, layout_id: uuid.UUID) -> None:
    """Write the sample opera house (~2,000 seats) as a JSON layout, ready to import."""
    text = canonical_json(content(opera_house(layout_id))).decode()
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")


def _prices(values: tuple[str, ...]) -> dict[str, int]:
    prices: dict[str, int] = {}
    for value in values:
        category, _, amount = value.partition("=")
        if not category or not amount.isdigit():
            raise click.BadParameter(f"{value!r} is not CATEGORY=MINOR_UNITS", param_hint="--price")
        prices[category] = int(amount)
    return prices


@main.command("create-event")
@layout_id_argument
@click.option("--hash", "layout_hash", required=True, help="The deployed version's hash.")
@click.option("--event-id", required=True)
@click.option("--currency", default="GBP", show_default=True)
@click.option(
    "--price",
    "prices",
    multiple=True,
    required=True,
    help="CATEGORY=MINOR_UNITS, once per category (e.g. A=8500).",
)
@click.option(
    "--redis-url", envvar="LML_REDIS_URL", default="redis://127.0.0.1:6379/0", show_default=True
)
@click.pass_context
def create_event(
    ctx: click.Context,
    layout_id: uuid.UUID,
    layout_hash: str,
    event_id: str,
    currency: str,
    prices: tuple[str, ...],
    redis_url: str,
) -> None:
    """Create an event's inventory from a deployed layout, with a price per category."""
    event = EventFromLayout(event_id, layout_id, layout_hash, currency, _prices(prices))

    async def work(backends: Backends) -> Any:
        redis = connect(redis_url)
        try:
            return await create_event_from_layout(
                backends.layouts, backends.pool, Inventory(redis), event
            )
        finally:
            await redis.aclose()

    response = _run(ctx, work)
    state = "created" if response.created else "already existed, unchanged"
    click.echo(f"event {event_id}: {response.event.seat_count} seats, {state}")
