"""The example notebooks in ``examples/``, executed cell by cell with nbclient so they
cannot rot: no cell may fail, and a few outputs a reader relies on must be there.

Each notebook starts its own site in a temporary folder (``EmbeddedSite``, or
``syft_compat``'s ``launch(..., reset=True)``) on offline data, so they run anywhere the
tests run. The kernel is ``python3`` from this environment (ipykernel installs its spec
into the venv; jupyter_client runs it with this interpreter).
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = [pytest.mark.integration, pytest.mark.one_database]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: Texts each notebook's outputs must show, in any cell.
EXPECTED = {
    "owner.ipynb": ["Datasite running at", "['Diabetes']", "bob@uni.example on Diabetes"],
    "researcher.ipynb": [
        "<Site http://127.0.0.1:",
        "1 datasets",
        "DP mean age:",
        "mean BMI",
        "Only the data owner can approve a blocked request",
        "<Budget Diabetes: epsilon 2.0 of 3.0 left",
    ],
    "reviewer.ipynb": ["Bob reads: Returns the exact mean", "Bob's DP mean BMI:"],
    "pysyft_tutorial.ipynb": ["registered as researcher", "rmse:", "Predicted screentime hour:"],
}


def outputs(notebook) -> str:  # type: ignore[no-untyped-def]
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            for mime in ("text/plain", "text/html"):
                texts.append(str(output.get("data", {}).get(mime, "")))
    return "\n".join(texts)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_notebook_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    monkeypatch.delenv("DATASITE_NO_PROGRESS", raising=False)  # the notebook's own lines
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        # Outputs that reach the kernel's IOPub channel after a cell's reply are waited for
        # this long (nbclient's default, 4 s, silently dropped one on a loaded CI machine).
        iopub_timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on a failure
    text = outputs(notebook)
    for expected in EXPECTED[name]:
        assert expected in text, f"{name}: no output shows {expected!r}"
    assert "ipywidgets" not in text  # no rich warning on every wait
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
