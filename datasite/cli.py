"""The ``datasite`` command: run a site, run the demo, and the owner's admin operations.

Admin commands talk to a running site over HTTP; give ``--url``, ``--email`` and
``--password`` or set ``DATASITE_URL``, ``DATASITE_EMAIL`` and ``DATASITE_PASSWORD``.

One login serves a whole shell session: the token is kept, readable only by you, in
``~/.config/datasite/tokens.json`` (``DATASITE_CONFIG_DIR`` moves it,
``DATASITE_NO_TOKEN_CACHE=1`` turns it off, ``datasite logout`` ends it), so the audit log
shows one login, not one per command. The cached token is used only with the password
that obtained it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, get_args

import typer
from rich import box
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from datasite.contract.lifecycle import State
from datasite.contract.schemas import Role

RoleName = StrEnum("RoleName", {value: value for value in get_args(Role)})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dp-datasite")
    except PackageNotFoundError:
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"datasite {_version()}")
        raise typer.Exit()


app = typer.Typer(
    help="A datasite with code review for differential privacy.", no_args_is_help=True
)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """A datasite with code review for differential privacy."""


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

Url = Annotated[
    str, typer.Option(envvar="DATASITE_URL", help="The site's address, e.g. http://host:8080.")
]
Email = Annotated[str, typer.Option(envvar="DATASITE_EMAIL", help="Your account's email.")]
Password = Annotated[
    str,
    typer.Option(envvar="DATASITE_PASSWORD", prompt=True, hide_input=True, help="Your password."),
]
RequestId = Annotated[int, typer.Argument(help="The request's number.", min=1, max=2**63 - 1)]
DatasetName = Annotated[str, typer.Argument(help="The dataset's name.")]


class Executor(StrEnum):
    local = "local"
    dask = "dask"


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on; default 127.0.0.1 (DATASITE_HOST)")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port to listen on; default 8080 (DATASITE_PORT)", min=1, max=65535),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for the database, tables and results; default ./datasite-data"),
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
    executor: Annotated[
        Executor | None, typer.Option(help="Where runs execute; default local")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Parallel sandbox runs (local executor)", min=1)
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="tls://host:port of a Dask scheduler (see DATASITE_DASK_TLS_*)"),
    ] = None,
) -> None:
    """Run a datasite. Every option can also come from its DATASITE_* variable.

    Prints where it listens, its data folder, database and executor, then "ready";
    refuses to start on a port or data folder another server uses."""
    from datasite.config import Settings
    from datasite.serve import ServeError, serve

    settings = Settings.from_env(
        host=host,
        port=port,
        data_dir=data_dir.resolve() if data_dir else None,
        database_url=database_url,
        dev_mode=dev or None,
        executor=executor.value if executor else None,
        executor_concurrency=concurrency,
        scheduler_address=scheduler,
    )
    try:
        serve(settings, _version())
    except ServeError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@app.command()
def demo(
    keep: Annotated[Path | None, typer.Option(help="Keep the site's data in this folder.")] = None,
) -> None:
    """Walk through the whole workflow on an embedded site with a real public dataset."""
    from datasite.demo import run_demo

    run_demo(keep)


def _config_dir() -> Path:
    if os.environ.get("DATASITE_CONFIG_DIR"):
        return Path(os.environ["DATASITE_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "datasite"


def _token_file() -> Path:
    return _config_dir() / "tokens.json"


def _cache_key(url: str, email: str) -> str:
    return f"{url.rstrip('/')} {email.strip().lower()}"


def _password_check(password: str, salt: bytes) -> str:
    """What the cache keeps of the password: a salted, slow hash, so a cached token is
    only used by someone who knows the password that obtained it."""
    return base64.b64encode(
        hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100_000)
    ).decode()


def _read_tokens() -> dict:
    try:
        return json.loads(_token_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_tokens(tokens: dict) -> None:
    path = _token_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(tokens, out)
    os.chmod(path.with_suffix(".tmp"), 0o600)
    os.replace(path.with_suffix(".tmp"), path)


def _cached_session(url: str, email: str, password: str):  # type: ignore[no-untyped-def]
    """A session from the token cache, if it holds a live token for this url, email and
    password; otherwise None."""
    from datasite.client.http import ApiSession, DatasiteError

    entry = _read_tokens().get(_cache_key(url, email))
    if not entry:
        return None
    try:
        salt = base64.b64decode(entry["salt"])
        fresh = datetime.fromisoformat(entry["expires_at"]) > datetime.now(UTC)
        matches = secrets.compare_digest(entry["check"], _password_check(password, salt))
    except (KeyError, ValueError, TypeError):
        return None
    if not (fresh and matches):
        return None
    session = ApiSession(url, entry["token"])
    try:
        session.user = session.get("/auth/me")  # revoked or expired: log in again
    except DatasiteError:
        session.close()
        return None
    return session


def _owner(url: str, email: str, password: str):  # type: ignore[no-untyped-def]
    """The owner's client: from the token cache when it can, else by logging in (and
    keeping the new token for the next command)."""
    from datasite.client.admin import OwnerClient
    from datasite.client.http import ApiSession

    url = url.rstrip("/")
    use_cache = not os.environ.get("DATASITE_NO_TOKEN_CACHE")
    session = _cached_session(url, email, password) if use_cache else None
    if session is None:
        session = ApiSession(url)
        body = session.post("/auth/login", json={"email": email, "password": password})
        if body.get("warning"):
            console.print(f"[yellow]{body['warning']}[/yellow]")
        session.token, session.user = body["token"], body["user"]
        session.http.headers["Authorization"] = f"Bearer {session.token}"
        if use_cache:
            salt = secrets.token_bytes(16)
            tokens = _read_tokens()
            tokens[_cache_key(url, email)] = {
                "token": session.token,
                "expires_at": body["expires_at"],
                "salt": base64.b64encode(salt).decode(),
                "check": _password_check(password, salt),
            }
            try:
                _write_tokens(tokens)
            except OSError as exc:
                console.print(f"[yellow]Could not keep the login token ({exc}).[/yellow]")
    return OwnerClient(session)


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


def _cell(value: object) -> str:
    """A value as people read it: ``1.1``, never ``1.0999999999999999``; nothing for None."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


#: Columns whose values are names a person copies or scans for (emails, actions,
#: states): kept whole on one line while the terminal allows; other columns fold.
_WHOLE = frozenset({"id", "email", "author", "actor", "action", "role", "state", "verdict"})
_FOLDED_AT_LEAST = 12
_GAP = 2  # between columns: one space of padding, one of (invisible) border


def _widths(natural: list[int], whole: list[bool], room: int) -> list[int]:
    """Column widths that fit ``room`` characters (gaps excluded). A folding column gets
    at least its natural width or ``_FOLDED_AT_LEAST``, whichever is less, so a header
    never folds; whole columns keep their natural width while the rest fits, else the
    widest give way (and fold) first; what is left goes to the folding columns, the
    narrowest first.

    >>> _widths([2, 24, 40, 9], [True, True, False, True], 74)
    [2, 24, 39, 9]
    >>> _widths([2, 57, 34, 9, 7], [True, True, False, False, False], 72)
    [2, 42, 12, 9, 7]
    """
    widths = list(natural)
    fixed = [i for i, w in enumerate(whole) if w]
    floor = {i: min(natural[i], _FOLDED_AT_LEAST) for i in range(len(natural)) if not whole[i]}
    while sum(widths[i] for i in fixed) + sum(floor.values()) > room:
        widest = max(fixed, key=lambda i: widths[i], default=None)
        if widest is None or widths[widest] <= _FOLDED_AT_LEAST:
            break
        widths[widest] -= 1
    left = room - sum(widths[i] for i in fixed)
    folded = sorted(floor, key=lambda i: natural[i])
    for n, i in enumerate(folded):
        share = left // (len(folded) - n)
        widths[i] = max(min(natural[i], share), floor[i])
        left -= widths[i]
    return [max(w, 1) for w in widths]


def _table(rows: list[dict], columns: list[str | tuple[str, str]]) -> None:
    """Rows as a table that stays readable in an 80-column terminal: a light frame (no
    side borders, two spaces between columns), names (``_WHOLE``) kept on one line, and
    no cell cut short with "…": other values too long for their column fold onto the
    next lines, whole (``_widths``). A column is a key, or ``(key, header)``. Cells are
    plain text, never Rich markup (a dataset summary may hold ``[brackets]``).
    """
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    headers = [c[1] if isinstance(c, tuple) else c.replace("_", " ") for c in columns]
    cells = [[_cell(row.get(_key(c))) for c in columns] for row in rows]
    natural = [
        max(len(line) for text in [header, *(row[i] for row in cells)] for line in text.split("\n"))
        for i, header in enumerate(headers)
    ]
    room = console.width - _GAP * (len(columns) - 1)
    fitted = (
        None
        if sum(natural) <= room
        else _widths(natural, [_key(c) in _WHOLE for c in columns], room)
    )
    for i, header in enumerate(headers):
        table.add_column(header, overflow="fold", width=fitted[i] if fitted else None)
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


def _key(column: str | tuple[str, str]) -> str:
    return column[0] if isinstance(column, tuple) else column


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="The new account's email.")],
    name: Annotated[str, typer.Argument(help="The person's name.")],
    url: Url,
    login: Email,
    password: Password,
    role: Annotated[RoleName, typer.Option(help="What the account may do.")] = RoleName.researcher,
    institution: Annotated[str, typer.Option(help="Their institution, shown to reviewers.")] = "",
) -> None:
    """Create an account; its generated password is printed once."""
    with _reported():
        created = _owner(url, login, password).users.create(
            email=email, name=name, role=role.value, institution=institution
        )
    console.print(
        f"Created {created['role']} {created['email']}; one-time password: "
        f"[bold]{created['generated_password']}[/bold]"
    )


@users_app.command("disable")
def users_disable(
    email: Annotated[str, typer.Argument(help="The account to disable.")],
    url: Url,
    login: Email,
    password: Password,
) -> None:
    """Disable an account: it can no longer log in; its requests and history stay."""
    with _reported():
        _owner(url, login, password).users.disable(email)
    console.print(f"Disabled {email}.")


@users_app.command("list")
def users_list(url: Url, login: Email, password: Password) -> None:
    """All accounts with their roles."""
    with _reported():
        _table(_owner(url, login, password).users.list(), ["email", "name", "role", "disabled"])


@datasets_app.command("upload")
def datasets_upload(
    name: Annotated[
        str, typer.Argument(help="Letters, digits, spaces, '-', '_' and '.'; at most 100.")
    ],
    real: Annotated[Path, typer.Option(help="The private table (CSV or Parquet).")],
    url: Url,
    login: Email,
    password: Password,
    mock: Annotated[
        Path | None, typer.Option(help="The mock table (CSV or Parquet), or --mock-synthetic.")
    ] = None,
    mock_synthetic: Annotated[
        bool, typer.Option(help="The site makes the mock: a DP synthetic copy of --real.")
    ] = False,
    mock_epsilon: Annotated[
        float | None, typer.Option(help="The epsilon the synthetic mock spends.")
    ] = None,
    mock_settings: Annotated[
        str,
        typer.Option(
            help='Synthesizer settings as JSON: {"bounds": {"age": [0, 120]}, '
            '"public_categories": {...}, "delta": 1e-6, "synthesizer": "mst", "bins": 10, '
            '"binning": "uniform" or "quantile", "quantile_share": 0.1, "exact_integers": 100}.'
        ),
    ] = "{}",
    asset: Annotated[str, typer.Option(help="The asset's name inside the dataset.")] = "data",
    description: Annotated[str, typer.Option(help="What the data is (Markdown).")] = "",
    summary: Annotated[str, typer.Option(help="One line shown in listings.")] = "",
    citation: Annotated[str, typer.Option(help="How to cite the data.")] = "",
    policy: Annotated[
        Path | None,
        typer.Option(
            help="A YAML, TOML or JSON policy in force from the start; a mock less "
            "k-anonymous on its k_anonymity_qis than its min_group_size is refused."
        ),
    ] = None,
) -> None:
    """Upload a dataset with one asset from two files (or one, with --mock-synthetic)."""
    import json

    import pandas as pd

    def read(path: Path) -> pd.DataFrame:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)

    if mock_synthetic == (mock is not None):
        raise typer.BadParameter("give exactly one of --mock or --mock-synthetic")
    extra: dict = {}
    if mock_synthetic:
        try:
            settings = json.loads(mock_settings)
        except ValueError as exc:
            raise typer.BadParameter(f"--mock-settings is not JSON: {exc}") from None
        extra = {"mock": "synthetic", "mock_epsilon": mock_epsilon, "mock_settings": settings}
    tables = read(real) if mock_synthetic else (read(real), read(mock))  # type: ignore[arg-type]
    with _reported():
        if policy is not None:
            from policies.schema import Policy

            extra["policy"] = Policy.from_file(policy).model_dump(mode="json")
        _owner(url, login, password).datasets.upload(
            name=name,
            assets={asset: tables},
            description=description,
            summary=summary,
            citation=citation,
            **extra,
        )
    console.print(f"Uploaded {name}.")


@datasets_app.command("list")
def datasets_list(url: Url, login: Email, password: Password) -> None:
    """Datasets with their assets; archived ones are marked."""
    with _reported():
        datasets = _owner(url, login, password).datasets.list()
    rows = [
        {
            "name": d["name"] + (" (archived)" if d.get("archived") else ""),
            "assets": ", ".join(a["name"] for a in d["assets"]),
            "summary": d["summary"],
        }
        for d in datasets
    ]
    _table(rows, ["name", "assets", "summary"])


@datasets_app.command("archive")
def datasets_archive(name: DatasetName, url: Url, login: Email, password: Password) -> None:
    """Hide a dataset from researchers and refuse new requests on it; its requests,
    results and ledger entries stay. `datasets restore` undoes it."""
    with _reported():
        _owner(url, login, password).datasets.archive(name)
    console.print(f"Archived {name}: researchers no longer see it; its history is kept.")


@datasets_app.command("restore")
def datasets_restore(name: DatasetName, url: Url, login: Email, password: Password) -> None:
    """Undo `datasets archive`: researchers see the dataset again."""
    with _reported():
        _owner(url, login, password).datasets.restore(name)
    console.print(f"Restored {name}.")


@datasets_app.command("delete")
def datasets_delete(
    name: DatasetName,
    url: Url,
    login: Email,
    password: Password,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a dataset no request used, with its files, policy and budgets. One that
    requests used is archived instead, so the ledger's history is never lost."""
    if not yes:
        typer.confirm(f"Delete dataset {name!r}?", abort=True)
    with _reported():
        done = _owner(url, login, password).datasets.delete(name)
    console.print(done["detail"])


class TextUnit(StrEnum):
    word = "word"
    document = "document"


class Side(StrEnum):
    real = "real"
    mock = "mock"


@datasets_app.command("anonymity")
def datasets_anonymity(
    name: DatasetName,
    url: Url,
    login: Email,
    password: Password,
    qi: Annotated[
        list[str] | None,
        typer.Option(help="A quasi-identifier column (repeat it); the policy's by default."),
    ] = None,
    k: Annotated[
        int | None, typer.Option(help="The k to meet; the policy's min_group_size by default.")
    ] = None,
    sensitive: Annotated[
        list[str] | None, typer.Option(help="A sensitive column for l-diversity (repeat it).")
    ] = None,
    side: Annotated[Side, typer.Option(help="Check the real table or the mock.")] = Side.real,
    asset: Annotated[str | None, typer.Option(help="The asset, if several hold the QIs.")] = None,
) -> None:
    """k-anonymity (and l-diversity) of a table on its quasi-identifiers, with its
    smallest groups; exit status 1 when below k. Group sizes and values are private.
    """

    with _reported():
        report = _owner(url, login, password).datasets.check_anonymity(
            name, quasi_identifiers=qi, k=k, sensitive=sensitive, side=side.value, asset=asset
        )
    colour = "green" if report["passes"] else "red"
    console.print(f"{report['asset']} ({report['side']}): [{colour}]{report['summary']}[/{colour}]")
    qis = report["quasi_identifiers"]
    rows = [  # _table shows them as text, never as Rich markup ("[40, 55)" is a value)
        {**{q: str(v) for q, v in g["values"].items()}, "rows": g["size"]}
        for g in report["smallest"]
    ]
    _table(rows, [*qis, "rows"])
    if not report["passes"]:
        raise typer.Exit(1)


@datasets_app.command("generalise")
def datasets_generalise(
    name: DatasetName,
    url: Url,
    login: Email,
    password: Password,
    qi: Annotated[list[str], typer.Option(help="A quasi-identifier column (repeat it).")],
    k: Annotated[int, typer.Option(min=1, help="Every QI combination is shared by k rows.")],
    out: Annotated[Path, typer.Option(help="Where to write the k-anonymous copy (Parquet).")],
    sensitive: Annotated[
        str | None, typer.Option(help="A sensitive column, for l-diversity with --l.")
    ] = None,
    l: Annotated[  # noqa: E741 - the property's name
        int | None, typer.Option("--l", min=1, help="Distinct sensitive values per group.")
    ] = None,
    identifier: Annotated[
        list[str] | None, typer.Option(help="A direct identifier, replaced by '*' (repeat it).")
    ] = None,
    max_suppressed: Annotated[
        float, typer.Option(min=0, max=100, help="At most this percent of rows is dropped.")
    ] = 5.0,
    asset: Annotated[str | None, typer.Option(help="The asset, if several hold the QIs.")] = None,
) -> None:
    """Write a k-anonymous (and l-diverse) copy of the real table, generalised by anjana:
    numbers into intervals, codes cut short. Not DP; audited."""
    with _reported():
        table, report = _owner(url, login, password).datasets.generalise(
            name, qi, k, sensitive=sensitive, l=l, identifiers=identifier,
            max_suppressed_percent=max_suppressed, asset=asset,
        )  # fmt: skip
    table.to_parquet(out, index=False)
    levels = ", ".join(f"{q} level {n}" for q, n in report["levels"].items())
    console.print(
        f"Wrote {report['rows']} rows to {out} ({report['suppressed']} dropped; {levels}): "
        f"{report['summary']}",
        markup=False,
    )


@datasets_app.command("privatize-text")
def datasets_privatize_text(
    name: DatasetName,
    url: Url,
    login: Email,
    password: Password,
    column: Annotated[str, typer.Option(help="The mock's text column to replace.")],
    epsilon: Annotated[float, typer.Option(help="Above 0: per word, or per document (--unit).")],
    unit: Annotated[TextUnit, typer.Option(help="What epsilon protects.")] = TextUnit.word,
    max_words: Annotated[int, typer.Option(min=1, help="Words kept of each document.")] = 100,
    asset: Annotated[str | None, typer.Option(help="The asset, if several hold it.")] = None,
) -> None:
    """Replace the mock's text column by the real documents under metric-DP word
    replacement (GloVe embeddings, noise, nearest word); the spend is audited."""
    with _reported():
        done = _owner(url, login, password).datasets.privatize_text(
            name, column, epsilon, unit=unit.value, max_words=max_words, asset=asset
        )
    console.print(
        f"The mock's {done['column']} ({done['asset']}) now holds privatized real documents: "
        f"{done['privacy_unit']}.",
        markup=False,
    )


@requests_app.command("list")
def requests_list(
    url: Url,
    login: Email,
    password: Password,
    state: Annotated[State | None, typer.Option(help="Only requests in this state.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Only requests on this dataset.")] = None,
) -> None:
    """Code requests, oldest first (`--state checked` is the review queue)."""
    with _reported():
        requests = _owner(url, login, password).requests.all(
            state=state.value if state else None, dataset=dataset
        )
    rows = [
        r.data | {"verdict": (r.data["policy_report"] or {}).get("verdict", "")} for r in requests
    ]
    _table(rows, ["id", "author", "dataset", "entry", "epsilon", "state", "verdict"])


@requests_app.command("show")
def requests_show(request_id: RequestId, url: Url, login: Email, password: Password) -> None:
    """The code, the declaration and the policy report of one request."""
    with _reported():
        request = _owner(url, login, password).requests.get(request_id)
    console.print(repr(request))
    console.print(Markdown(f"```python\n{request.code}\n```"))
    if request.policy_report is not None:
        console.print(Markdown(request.policy_report.to_markdown()))


@requests_app.command("approve")
def requests_approve(
    request_id: RequestId,
    url: Url,
    login: Email,
    password: Password,
    justification: Annotated[
        str | None,
        typer.Option(help="Why you approve; required when the checker blocked the request."),
    ] = None,
) -> None:
    """Approve a request: its budget is reserved and its first run starts."""
    with _reported():
        request = _owner(url, login, password).requests.get(request_id).approve(justification)
    console.print(f"Request {request_id} is {request.state}.")


@requests_app.command("deny")
def requests_deny(
    request_id: RequestId,
    reason: Annotated[str, typer.Argument(help="Why, in words the researcher will read.")],
    url: Url,
    login: Email,
    password: Password,
) -> None:
    """Deny a request; the researcher sees the reason."""
    with _reported():
        _owner(url, login, password).requests.get(request_id).deny(reason)
    console.print(f"Request {request_id} denied.")


@budgets_app.command("grant")
def budgets_grant(
    email: Annotated[str, typer.Argument(help="The researcher's email.")],
    dataset: DatasetName,
    epsilon: Annotated[float, typer.Argument(help="The total epsilon they may spend.", min=0)],
    url: Url,
    login: Email,
    password: Password,
    delta: Annotated[float, typer.Option(help="The total delta they may spend.", min=0)] = 0.0,
) -> None:
    """Set the total privacy loss a researcher may spend on a dataset."""
    with _reported():
        grant = _owner(url, login, password).budgets.grant(email, dataset, epsilon, delta)
    console.print(
        f"{email} may spend epsilon={grant['epsilon']:g} on {dataset} "
        f"({grant['remaining_epsilon']:g} left)."
    )


@budgets_app.command("list")
def budgets_list(url: Url, login: Email, password: Password) -> None:
    """Every grant with what is spent and what is left."""
    with _reported():
        grants = _owner(url, login, password).budgets.list()
    _table(
        grants,
        ["email", "dataset", ("epsilon", "ε granted"), ("spent_epsilon", "ε spent"),
         ("remaining_epsilon", "ε left")],
    )  # fmt: skip


@policies_app.command("set")
def policies_set(
    dataset: DatasetName,
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
def policies_show(dataset: DatasetName, url: Url, login: Email, password: Password) -> None:
    """A dataset's policy as JSON."""
    with _reported():
        console.print_json(data=_owner(url, login, password).policies.get(dataset))


@app.command()
def audit(
    url: Url,
    login: Email,
    password: Password,
    action: Annotated[
        str | None, typer.Option(help="Only this action, e.g. login or request_approved.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many events.", min=1, max=5000)] = 50,
) -> None:
    """The audit log, newest first."""
    filters = {"limit": limit} | ({"action": action} if action else {})
    with _reported():
        events = _owner(url, login, password).audit(**filters)
    rows = [  # when and from where share a column: the date, the time, the address
        e | {
            "at": "\n".join([*str(e.get("at") or "")[:19].split("T"), e.get("address") or ""]),
            "target": f"{e.get('target_type') or ''} {e.get('target_id') or ''}".strip(),
        }
        for e in events
    ]  # fmt: skip
    _table(rows, ["id", ("at", "when, from"), "actor", "action", "target"])


@app.command()
def logout(url: Url, login: Email) -> None:
    """End the login the CLI keeps for this site and account (revokes its token)."""
    from datasite.client.http import ApiSession, DatasiteError

    tokens = _read_tokens()
    entry = tokens.pop(_cache_key(url, login), None)
    if entry is None:
        console.print(f"No kept login for {login} at {url}.")
        return
    session = ApiSession(url.rstrip("/"), entry.get("token"))
    try:
        session.post("/auth/logout")
    except DatasiteError:
        pass  # expired or unreachable: forgetting it is what matters here
    finally:
        session.close()
    _write_tokens(tokens)
    console.print(f"Logged out {login} at {url}.")
