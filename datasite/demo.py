"""``datasite demo``: every user's steps on an embedded site with a real public dataset.

The private table is scikit-learn's bundled diabetes study (442 patients: age, sex, BMI,
blood pressure, six blood serum measurements and disease progression). The mock is
generated from public bounds, column by column, so it shares no patient with the real
table. The site runs as a real server process in a temporary folder.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel

from datasite import admin
from datasite.client.embedded import EmbeddedSite

console = Console()
OWNER, OWNER_PW = "steward@hospital.example", "demo-owner-password-7Qx"
BOB, BOB_PW = "bob@uni.example", "demo-researcher-password-3Lp"
REVIEWER, REVIEWER_PW = "rita@hospital.example", "demo-reviewer-password-9Zt"


def diabetes_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The real diabetes table and a mock drawn from public per-column bounds."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(as_frame=True, scaled=False)
    real = bunch.frame.rename(
        columns={"s1": "tc", "s2": "ldl", "s3": "hdl", "s4": "tch", "s5": "ltg", "s6": "glu"}
    )
    real["sex"] = real["sex"].astype("int64")
    real["age"] = real["age"].astype("int64")
    rng = np.random.default_rng(2026)
    n = 200
    mock = pd.DataFrame(
        {column: rng.uniform(real[column].min(), real[column].max(), n) for column in real.columns}
    )
    mock["sex"] = rng.integers(1, 3, n).astype("int64")
    mock["age"] = rng.integers(19, 80, n).astype("int64")
    return real, mock[real.columns]


def step(title: str) -> None:
    console.rule(f"[bold]{title}")


def doing(what: str) -> None:
    """Say what runs next, before a step that takes a few seconds."""
    console.print(f"[dim]… {what}[/dim]")


def run_demo(keep: Path | None = None) -> None:
    """Run the walkthrough; with ``keep`` the site's folder stays for inspection."""
    import researcher_kit as rk

    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="datasite-demo-"))
    doing("loading scikit-learn's diabetes study and starting a datasite server process")
    real, mock = diabetes_tables()
    with EmbeddedSite(
        folder / "site",
        owner_email=OWNER,
        owner_password=OWNER_PW,
        env={"DATASITE_NO_PROGRESS": "1"},
    ) as site:
        console.print(Panel(f"Datasite running at {site.url} (data in {folder})"))

        step("Data owner: upload, accounts, budget, policy")
        owner = admin.connect(site.url, OWNER, OWNER_PW)
        doing("uploading the real table and its mock")
        owner.datasets.upload(
            name="Diabetes",
            assets={"patients": (real, mock)},
            description="Ten baseline variables and disease progression one year later.",
            summary="442 diabetes patients (Efron et al., 2004)",
            citation="Efron, Hastie, Johnstone, Tibshirani. Least Angle Regression. 2004.",
            progress=False,
        )
        console.print(
            f"Uploaded Diabetes: {len(real)} real rows (they stay on the site), "
            f"{len(mock)} mock rows drawn from public bounds (researchers see these)"
        )
        owner.users.create(email=BOB, name="Dr. Bob", password=BOB_PW, institution="University")
        owner.users.create(email=REVIEWER, name="Rita", role="reviewer", password=REVIEWER_PW)
        owner.budgets.grant(BOB, "Diabetes", epsilon=3.0)
        owner.policies.set("Diabetes", max_epsilon_per_request=1.0)
        console.print(
            "Created researcher bob@uni.example and reviewer rita@hospital.example; "
            "granted Bob epsilon=3.0; every request waits for a reviewer for now"
        )

        step("Researcher: browse, try on the mock, submit")
        bob = rk.login(site.url, BOB, BOB_PW)
        patients = bob.datasets["Diabetes"].assets["patients"]
        console.print(patients.mock.head())

        # Data-blind: df is a blind frame (columns, no rows); each rk.dp helper is
        # released by the site's releaser, which holds the data and the budget.
        @rk.dp_request(asset=patients, epsilon=0.5)
        def mean_age(df):  # type: ignore[no-untyped-def]
            from researcher_kit import dp

            return dp.mean(df["age"], bounds=(18, 90), epsilon=0.5)

        doing("running mean_age on the mock and asking the site's checker for a report")
        trial = mean_age.run_on_mock()
        console.print(
            f"On the mock: {trial.outputs:.1f} is a noisy mean of the {len(mock)} mock ages, "
            f"measured epsilon {trial.spend.epsilon:g} (the mock costs no budget); "
            f"the site's verdict: {trial.report.verdict}"
        )
        request = bob.submit(
            mean_age, project="Diabetes ages", description="Mean age of the cohort"
        )
        console.print(f"Submitted request {request.id}")

        step("Policy checker and reviewer")
        doing("the checker dry-runs the request on the mock")
        request.wait(until=("checked",))
        reviewer = admin.connect(site.url, REVIEWER, REVIEWER_PW)
        pending = reviewer.requests.get(request.id)
        console.print(Markdown(pending.policy_report.to_markdown()))
        pending.approve()
        console.print(f"Rita approved request {request.id}")

        step("Researcher: the result on the private data")
        doing("running mean_age on the private data in the sandbox")
        noisy = request.result()
        console.print(
            f"DP mean age: {noisy:.1f} is a noisy mean of the {len(real)} patients' ages, "
            f"clamped to 18-90, epsilon 0.5 (the true mean, {real['age'].mean():.1f}, stays "
            "on the site; it is printed here only because the demo plays the owner too)"
        )

        step("A Context request, approved automatically")
        owner.policies.set("Diabetes", max_epsilon_per_request=1.0, auto_approve=True)
        console.print("The owner turns on auto-approval for data-blind requests that pass")

        @rk.dp_request(asset=patients, epsilon=0.5, context=True, queries=2)
        def cohort(ctx):  # type: ignore[no-untyped-def]
            from researcher_kit import dp

            return {
                "patients": dp.ctx_count(ctx),
                "mean_bmi": dp.ctx_mean(ctx, "bmi", bounds=(15.0, 45.0)),
            }

        doing("submitting; the checker passes it and the site runs it without a person")
        auto = bob.submit(cohort, project="Diabetes ages")
        answer = auto.result()
        console.print(
            f"Request {auto.id}: {auto.wait().state}. {answer['patients']} is a noisy count of "
            f"{len(real)} patients, epsilon 0.25; {answer['mean_bmi']:.1f} is a noisy mean BMI "
            f"(true {real['bmi'].mean():.1f}), clamped to 15-45, epsilon 0.25"
        )

        step("A DP model: diffprivlib logistic regression, returned with skops")

        @rk.dp_request(asset=patients, epsilon=1.0)
        def progression_model(df):  # type: ignore[no-untyped-def]
            from researcher_kit import dp

            features = df[["age", "bmi", "bp"]]  # blind: the releaser fits on the rows
            return dp.fit_model(
                "logistic_regression", features, df["target"] > 140, epsilon=1.0, data_norm=120.0
            )

        doing("training the DP model on the private rows (a few seconds)")
        model_request = bob.submit(progression_model, project="Diabetes ages")
        console.print(f"Request {model_request.id}: {model_request.wait().state}")
        doing("fetching the model and scoring it on the mock's rows")
        model = rk.dp.load_model(model_request.result())
        held_out = patients.mock  # rows the model never saw; the researcher has them
        accuracy = float(
            (
                model.predict(held_out[["age", "bmi", "bp"]].to_numpy())
                == (held_out["target"] > 140)
            ).mean()
        )
        sample = np.array([[50.0, 30.0, 95.0], [30.0, 21.0, 80.0]])
        console.print(
            f"{type(model).__name__} trained with epsilon 1.0: accuracy {accuracy:.0%} on "
            f"{len(held_out)} held-out mock rows (the mock is random, so this checks the model "
            f"works rather than how well it learned); it predicts "
            f"{model.predict(sample).tolist()} for two new patients"
        )

        step("A raw aggregate: blocked by the checker, denied by the reviewer")

        @rk.dp_request(asset=patients, epsilon=0.1, raw=True)  # receives the real table
        def raw_mean(df):  # type: ignore[no-untyped-def]
            return float(df["target"].mean())

        doing("submitting; the checker dry-runs it on the mock")
        raw = bob.submit(raw_mean, project="Diabetes ages")
        raw.wait(until=("checked",))
        report = reviewer.requests.get(raw.id).policy_report
        console.print(f"Verdict: {report.verdict}")
        for finding in report.findings:
            where = f"line {finding.line}" if finding.line else finding.stage
            # Plain text: "[blocking]" is the severity, not Rich markup.
            console.print(f"  {where}: [{finding.severity}] {finding.message}", markup=False)
        reviewer.requests.get(raw.id).deny("Returns the exact mean of the private target.")
        console.print(f"Bob sees: {bob.request(raw.id).deny_reason}")

        step("Ledger and audit")
        spent: dict[int, float] = {}
        for entry in owner.budgets.ledger():
            spent[entry["request_id"]] = spent.get(entry["request_id"], 0.0) + entry["epsilon"]
        names = {r.id: (r.entry, r.state) for r in owner.requests.all()}
        for request_id, epsilon in sorted(spent.items()):
            entry, state = names.get(request_id, ("?", "?"))
            console.print(f"  request {request_id} {entry:<20} {state:<9} epsilon {epsilon:.2f}")
        for grant in owner.budgets.list():
            console.print(
                f"{grant['email']} on {grant['dataset']}: spent "
                f"{grant['spent_epsilon']:.2f} of {grant['epsilon']:.1f}, "
                f"{grant['remaining_epsilon']:.2f} left (the denied request spent nothing)"
            )
        for event in owner.audit(limit=8):
            console.print(f"{event['at'][:19]}  {event['actor']:<26} {event['action']}")
        doing("stopping the datasite server")
    if keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    console.print(Panel("Demo finished: upload, submit, check, approve, run, fetch."))
