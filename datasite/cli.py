"""The ``datasite`` command: run a site, run the demo, and the owner's admin operations.

Admin commands talk to a running site over HTTP; give ``--url``, ``--email`` and
``--password`` or set ``DATASITE_URL``, ``DATASITE_EMAIL`` and ``DATASITE_PASSWORD``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

app = typer.Typer(
    help="A datasite with code review for differential privacy.", no_args_is_help=True
)
users_app = typer.Typer(help="Accounts.", no_args_is_help=True)
datasets_app = typer.Typer(help="Datasets and their assets.", no_args_is_help=True)
requests_app = typer.Typer(help="Code requests: read, approve, deny.", no_args_is_help=True)
budgets_app = typer.Typer(help="Privacy budgets.", no_args_is_help=True)
policies_app = typer.Typer(help="Dataset policies.", no_args_is_help=True)
for sub, name in (
    (users_app, "users"),
    (datasets_app, "datasets"),
    (requests_app, "requests"),
    (budgets_app, "budgets"),
    (policies_app, "policies"),
):
    app.add_typer(sub, name=name)
console = Console()

Url = Annotated[str, typer.Option(envvar="DATASITE_URL", help="The site's address.")]
Email = Annotated[str, typer.Option(envvar="DATASITE_EMAIL", help="Your account.")]
Password = Annotated[
    str,
    typer.Option(envvar="DATASITE_PASSWORD", prompt=True, hide_input=True, help="Your password."),
]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default 127.0.0.1 (DATASITE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Default 8080 (DATASITE_PORT)")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Default ./datasite-data (DATASITE_DATA_DIR)")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL; default SQLite in the data dir")
    ] = None,
    dev: Annotated[
        bool,
        typer.Option(
            "--dev", help="Development site with the fixed owner password (DATASITE_DEV_MODE)"
        ),
    ] = False,
    executor: Annotated[str | None, typer.Option(help="local (default) or dask")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Parallel sandbox runs")] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="tcp://host:port of a Dask scheduler")
    ] = None,
) -> None:
    """Run a datasite. Every option can also come from its DATASITE_* variable."""
    import uvicorn

    from datasite.app import create_app
    from datasite.config import Settings

    settings = Settings.from_env(
        host=host,
        port=port,
        data_dir=data_dir.resolve() if data_dir else None,
        database_url=database_url,
        dev_mode=dev or None,
        executor=executor,
        executor_concurrency=concurrency,
        scheduler_address=scheduler,
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


@app.command()
def demo(
    keep: Annotated[Path | None, typer.Option(help="Keep the site's data in this folder.")] = None,
) -> None:
    """Walk through the whole workflow on an embedded site with a real public dataset."""
    from datasite.demo import run_demo

    run_demo(keep)


def _owner(url: str, email: str, password: str):  # type: ignore[no-untyped-def]
    from datasite import admin

    return admin.connect(url, email, password)


@contextmanager
def _reported() -> Iterator[None]:
    """What the site refuses (or a file that cannot be read) becomes one red line and
    exit status 1, never a traceback."""
    from datasite.client.http import DatasiteError

    try:
        yield
    except (DatasiteError, OSError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


def _table(rows: list[dict], columns: list[str]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    console.print(table)


@users_app.command("create")
def users_create(
    email: str,
    name: str,
    url: Url,
    login: Email,
    password: Password,
    role: str = "researcher",
    institution: str = "",
) -> None:
    """Create an account; its generated password is printed once."""
    with _reported():
        created = _owner(url, login, password).users.create(
            email=email, name=name, role=role, institution=institution
        )
    console.print(
        f"Created {created['role']} {created['email']}; one-time password: "
        f"[bold]{created['generated_password']}[/bold]"
    )


@users_app.command("disable")
def users_disable(email: str, url: Url, login: Email, password: Password) -> None:
    with _reported():
        _owner(url, login, password).users.disable(email)
    console.print(f"Disabled {email}.")


@users_app.command("list")
def users_list(url: Url, login: Email, password: Password) -> None:
    with _reported():
        _table(_owner(url, login, password).users.list(), ["email", "name", "role", "disabled"])


@datasets_app.command("upload")
def datasets_upload(
    name: str,
    real: Annotated[Path, typer.Option(help="The private table (CSV or Parquet).")],
    mock: Annotated[Path, typer.Option(help="The mock table (CSV or Parquet).")],
    url: Url,
    login: Email,
    password: Password,
    asset: str = "data",
    description: str = "",
    summary: str = "",
    citation: str = "",
) -> None:
    """Upload a dataset with one asset from two files."""
    import pandas as pd

    def read(path: Path) -> pd.DataFrame:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)

    with _reported():
        _owner(url, login, password).datasets.upload(
            name=name,
            assets={asset: (read(real), read(mock))},
            description=description,
            summary=summary,
            citation=citation,
        )
    console.print(f"Uploaded {name}.")


@datasets_app.command("list")
def datasets_list(url: Url, login: Email, password: Password) -> None:
    with _reported():
        datasets = _owner(url, login, password).datasets.list()
    rows = [
        {
            "name": d["name"],
            "assets": ", ".join(a["name"] for a in d["assets"]),
            "summary": d["summary"],
        }
        for d in datasets
    ]
    _table(rows, ["name", "assets", "summary"])


@requests_app.command("list")
def requests_list(url: Url, login: Email, password: Password, state: str | None = None) -> None:
    with _reported():
        requests = _owner(url, login, password).requests.all(state=state)
    rows = [
        r.data | {"verdict": (r.data["policy_report"] or {}).get("verdict", "")} for r in requests
    ]
    _table(rows, ["id", "author", "dataset", "entry", "epsilon", "state", "verdict"])


@requests_app.command("show")
def requests_show(request_id: int, url: Url, login: Email, password: Password) -> None:
    """The code, the declaration and the policy report of one request."""
    with _reported():
        request = _owner(url, login, password).requests.get(request_id)
    console.print(repr(request))
    console.print(Markdown(f"```python\n{request.code}\n```"))
    if request.policy_report is not None:
        console.print(Markdown(request.policy_report.to_markdown()))


@requests_app.command("approve")
def requests_approve(
    request_id: int, url: Url, login: Email, password: Password, justification: str | None = None
) -> None:
    with _reported():
        request = _owner(url, login, password).requests.get(request_id).approve(justification)
    console.print(f"Request {request_id} is {request.state}.")


@requests_app.command("deny")
def requests_deny(request_id: int, reason: str, url: Url, login: Email, password: Password) -> None:
    with _reported():
        _owner(url, login, password).requests.get(request_id).deny(reason)
    console.print(f"Request {request_id} denied.")


@budgets_app.command("grant")
def budgets_grant(
    email: str,
    dataset: str,
    epsilon: float,
    url: Url,
    login: Email,
    password: Password,
    delta: float = 0.0,
) -> None:
    with _reported():
        grant = _owner(url, login, password).budgets.grant(email, dataset, epsilon, delta)
    console.print(
        f"{email} may spend epsilon={grant['epsilon']:g} on {dataset} "
        f"({grant['remaining_epsilon']:g} left)."
    )


@budgets_app.command("list")
def budgets_list(url: Url, login: Email, password: Password) -> None:
    with _reported():
        grants = _owner(url, login, password).budgets.list()
    _table(grants, ["email", "dataset", "epsilon", "spent_epsilon", "remaining_epsilon"])


@policies_app.command("set")
def policies_set(
    dataset: str,
    url: Url,
    login: Email,
    password: Password,
    file: Annotated[Path | None, typer.Option(help="A YAML or TOML policy file.")] = None,
    field: Annotated[list[str] | None, typer.Option(help="name=value (JSON value)")] = None,
) -> None:
    """Set a dataset's policy from a file, or change single fields."""
    from policies.schema import Policy

    with _reported():
        owner = _owner(url, login, password)
        if file is not None:
            document = Policy.from_file(file).model_dump(mode="json")
            owner.session.put(f"/datasets/{dataset}/policy", json=document)
        changes = {}
        for item in field or []:
            key, _, value = item.partition("=")
            try:
                changes[key] = json.loads(value)
            except json.JSONDecodeError:
                changes[key] = value
        if changes:
            owner.policies.set(dataset, **changes)
        console.print_json(data=owner.policies.get(dataset))


@policies_app.command("show")
def policies_show(dataset: str, url: Url, login: Email, password: Password) -> None:
    with _reported():
        console.print_json(data=_owner(url, login, password).policies.get(dataset))


@app.command()
def audit(
    url: Url, login: Email, password: Password, action: str | None = None, limit: int = 50
) -> None:
    """The audit log, newest first."""
    filters = {"limit": limit} | ({"action": action} if action else {})
    with _reported():
        events = _owner(url, login, password).audit(**filters)
    _table(events, ["id", "at", "actor", "action", "target_type", "target_id", "address"])
