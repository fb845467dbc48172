"""Text privatization (metric-DP word replacement): the noise law, the replacements at
large and small epsilon, OOV handling, the odometer, and the data-blind release."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from datasite.client.http import DatasiteError
from researcher_kit import dp
from researcher_kit.blind import ReleaseError, local_frames
from researcher_kit.dp import text

VOCAB = 5000  # small, so the exact neighbour table and the IVF index build in seconds


@pytest.fixture(scope="module")
def emb() -> text.Embeddings:
    return text.load_embeddings(VOCAB)


def test_noise_radius_follows_its_gamma_law_and_direction_is_uniform() -> None:
    rng = np.random.default_rng(20240601)  # fixed for the test only; releases use os.urandom
    d, eps = 50, 2.0
    z = text.sample_noise(20_000, d, eps, rng)
    radius = np.linalg.norm(z.astype(np.float64), axis=1)
    assert stats.kstest(radius, stats.gamma(a=d, scale=1 / eps).cdf).pvalue > 0.01
    # The test has power: one dimension off, or the wrong scale, is rejected.
    assert stats.kstest(radius, stats.gamma(a=d - 5, scale=1 / eps).cdf).pvalue < 1e-6
    assert stats.kstest(radius, stats.gamma(a=d, scale=1.1 / eps).cdf).pvalue < 1e-6
    direction = z / radius[:, None]
    # Uniform on the sphere: mean ~ 0, each coordinate's variance 1/d.
    assert np.abs(direction.mean(axis=0)).max() < 5 * np.sqrt(1 / d / len(z))
    assert np.allclose(direction.var(axis=0), 1 / d, rtol=0.1)


def test_secure_noise_is_not_repeatable() -> None:
    a, b = text.sample_noise(4, 50, 1.0), text.sample_noise(4, 50, 1.0)
    assert not np.allclose(a, b)


def test_large_epsilon_returns_the_original_word(emb: text.Embeddings) -> None:
    words = np.array(["good", "movie", "the", "patient", "house", "music"] * 200, dtype=object)
    out = text.privatize_words(words, 2000.0, embeddings=emb)
    assert (out == words).mean() > 0.999


def test_small_epsilon_spreads_widely(emb: text.Embeddings) -> None:
    words = np.array(["good"] * 1000, dtype=object)
    out = pd.Series(text.privatize_words(words, 1.0, embeddings=emb))
    assert (out == "good").mean() < 0.05
    assert out.nunique() > 200
    assert set(out) <= set(emb.words)


def test_replacements_move_with_epsilon(emb: text.Embeddings) -> None:
    table = text.count_replacements(["good", "house"], [5.0, 50.0], samples=400, vocabulary=VOCAB)
    kept = table.set_index(["word", "epsilon"])["kept"]
    for word in ("good", "house"):
        assert kept[(word, 5.0)] < kept[(word, 50.0)]


def test_ann_and_exact_search_agree_where_the_search_is_local(emb: text.Embeddings) -> None:
    rng = np.random.default_rng(3)
    sources = rng.integers(0, len(emb.words), 3000)
    points = emb.vectors[sources] + text.sample_noise(3000, emb.dims, 30.0, rng)
    flat = emb.flat.search(points, 1)[1][:, 0]
    assert (emb.nearest(points, sources, "exact") == flat).all()
    assert (emb.nearest(points, sources, "ann") == flat).mean() > 0.97


def test_the_search_is_the_same_function_of_the_noisy_point(emb: text.Embeddings) -> None:
    """The shortcuts change no answer: near points get the exact nearest word (faiss'
    brute force), the word itself when ``||z|| < r_w / 2``, and far points exactly what
    faiss' own IVF search answers (the cells scanned by matrix products instead)."""
    rng = np.random.default_rng(5)
    sources = rng.integers(0, len(emb.words), 6000)
    for eps in (3.0, 15.0, 30.0, 60.0):
        noise = text.sample_noise(len(sources), emb.dims, eps, rng)
        points = emb.vectors[sources] + noise
        radius = np.linalg.norm(noise, axis=1)
        local = 2 * radius < emb.neighbours[1][sources]
        exact = emb.flat.search(points, 1)[1][:, 0]
        by_ivf = emb.ivf.search(points, 1)[1][:, 0]
        found = emb.nearest(points, sources, "ann")
        assert (found[local] == exact[local]).all()
        assert (found[~local] == by_ivf[~local]).all()
        alone = 2 * radius < emb.reach[sources, 1]  # within half the nearest other word
        assert (found[alone] == sources[alone]).all()
    # r_w is the nearest other word's distance (rounded down a little).
    word = int(emb.indices(np.array(["house"], dtype=object))[0])
    others = np.delete(np.linalg.norm(emb.vectors - emb.vectors[word], axis=1), word)
    assert emb.reach[word, 1] == pytest.approx(others.min(), rel=1e-3)
    assert emb.reach[word, 1] <= others.min()


def test_batches_on_two_threads_keep_the_order(emb: text.Embeddings) -> None:
    words = emb.words[np.arange(2 * text.BATCH + 17) % 3000]
    out = text.privatize_words(words, 5000.0, embeddings=emb, workers=2)
    assert (out == words).mean() > 0.999
    out = text.privatize_words(words, 2.0, embeddings=emb, workers=2)
    assert len(out) == len(words) and set(out) <= set(emb.words)


def test_noise_radius_is_independent_of_the_direction_and_odd_dims_work() -> None:
    rng = np.random.default_rng(11)
    d, eps = 50, 4.0
    z = text.sample_noise(40_000, d, eps, rng).astype(np.float64)
    radius = np.linalg.norm(z, axis=1)
    direction = z / radius[:, None]
    # The radius shares Box-Muller's exponentials: it must not depend on the direction.
    spread = np.abs(direction).max(axis=1)
    for half in (spread < np.median(spread), spread >= np.median(spread)):
        assert stats.kstest(radius[half], stats.gamma(a=d, scale=1 / eps).cdf).pvalue > 0.01
    assert abs(stats.spearmanr(radius, spread).statistic) < 0.03
    odd = text.sample_noise(20_000, 7, 1.5, rng)
    assert odd.shape == (20_000, 7)
    radius = np.linalg.norm(odd.astype(np.float64), axis=1)
    assert stats.kstest(radius, stats.gamma(a=7, scale=1 / 1.5).cdf).pvalue > 0.01


def test_oov_words_are_never_returned(emb: text.Embeddings) -> None:
    words = np.array(["good", "zxqvbn123secret", "qqqpatientqqq"] * 100, dtype=object)
    tokened = text.privatize_words(words, 1000.0, embeddings=emb, oov="token")
    assert (tokened[1::3] == text.OOV_TOKEN).all() and (tokened[0::3] == "good").all()
    sampled = pd.Series(text.privatize_words(words, 1000.0, embeddings=emb, oov="sample"))
    assert set(sampled) <= set(emb.words)
    assert sampled[1::3].nunique() > 50  # a fresh uniform vocabulary word each time


def test_tokenize_truncates_and_handles_missing() -> None:
    tokens, lengths = text.tokenize(["Hello, World! How are you?", None, "", "one"], 3)
    assert list(tokens) == ["hello", "world", "how", "one"]
    assert list(lengths) == [3, 0, 0, 1]


def test_local_release_charges_the_budget_and_records_the_unit() -> None:
    notes = pd.Series(["the patient was seen today", "good movie"], name="note")
    budget = dp.Budget(epsilon=100.0)
    with dp.track() as spent:
        out = dp.privatize_text(
            notes, 5.0, unit="word", max_words=10, vocabulary=VOCAB, budget=budget
        )
    assert budget.spent_epsilon == pytest.approx(50.0)
    (entry,) = spent.entries
    assert entry.helper == "privatize_text"
    assert entry.mechanism == "metric_dp_laplace_embedding"
    assert entry.details["unit"] == "word" and entry.details["dims"] == 50
    assert entry.details["words"] == 10
    assert [len(doc.split()) for doc in out] == [5, 2]
    with dp.track() as spent:
        dp.privatize_text(notes, 5.0, unit="document", max_words=10, vocabulary=VOCAB)
    assert spent.epsilon == pytest.approx(5.0)
    assert spent.entries[0].details["word_epsilon"] == pytest.approx(0.5)
    with pytest.raises(dp.BudgetExceeded):
        dp.privatize_text(notes, 5.0, max_words=20, vocabulary=VOCAB, budget=budget)
    assert budget.spent_epsilon == pytest.approx(50.0)


def _blind(epsilon: float) -> tuple[object, object]:
    secret = "zqxsecretmarker"
    table = pd.DataFrame(
        {
            "text": [f"my name is {secret} and i loved this movie", "terrible food", None] * 20,
            "age": [30, 40, 50] * 20,
        }
    )
    df = local_frames({"df": table}, epsilon=epsilon)["df"]
    return df, df.channel.releaser


def test_blind_request_charges_the_odometer_before_reading() -> None:
    df, releaser = _blind(epsilon=25.0)
    out = dp.privatize_text(df["text"], epsilon=1.0, max_words=20, vocabulary=VOCAB)
    assert releaser.budget.spent_epsilon == pytest.approx(20.0)
    assert [e.helper for e in releaser.spent.entries] == ["privatize_text"]
    assert len(out) == 60
    with pytest.raises(dp.BudgetExceeded):
        dp.privatize_text(df["text"], epsilon=1.0, max_words=20, vocabulary=VOCAB)
    assert releaser.budget.spent_epsilon == pytest.approx(20.0)
    with pytest.raises(ReleaseError, match="no row filter"):
        dp.privatize_text(df[df["age"] > 35]["text"], epsilon=0.1, max_words=5)


def test_blind_request_returns_only_privatized_text(emb: text.Embeddings) -> None:
    df, _ = _blind(epsilon=1000.0)
    out = dp.privatize_text(df["text"], epsilon=2.0, max_words=20, vocabulary=VOCAB)
    assert isinstance(out, pd.Series) and out.name == "text"
    words = {w for doc in out for w in doc.split()}
    assert "zqxsecretmarker" not in words
    assert words <= set(emb.words)
    originals = {"my name is zqxsecretmarker and i loved this movie", "terrible food"}
    assert not originals & set(out)
    assert sorted(len(doc.split()) for doc in out) == sorted([9, 2, 0] * 20)


def test_batches_from_parquet_keep_memory_bounded(tmp_path: object) -> None:
    path = tmp_path / "t.parquet"  # type: ignore[operator]
    pq.write_table(
        pa.table({"text": ["good movie", "bad food today"] * 500}), path, row_group_size=100
    )
    batches = (b.column("text").to_pandas() for b in pq.ParquetFile(path).iter_batches(128))
    parts = list(text.privatize_batches(batches, 1000.0, max_words=5, vocabulary=VOCAB))
    assert len(parts) == 8 and sum(map(len, parts)) == 1000
    assert pd.concat(parts).iloc[:2].tolist() == ["good movie", "bad food today"]


def test_owner_private_column_reads_batches_and_stops_at_rows(tmp_path: object) -> None:
    from datasite.text_privacy import private_column

    path = tmp_path / "real.parquet"  # type: ignore[operator]
    docs = [f"secretword{i} loved this movie" for i in range(300)]
    pq.write_table(pa.table({"review": docs, "n": list(range(300))}), path, row_group_size=50)
    out = private_column(path, "review", 1000.0, rows=120, vocabulary=VOCAB, batch_rows=50)
    assert len(out) == 120 and out.name == "review"
    assert not any("secretword" in doc for doc in out)  # OOV markers never come back
    assert all(doc.endswith("loved this movie") for doc in out)


@pytest.mark.integration
@pytest.mark.one_database
def test_the_releaser_reads_the_sites_warm_cache(tmp_path, emb: text.Embeddings) -> None:  # type: ignore[no-untyped-def]
    """A run in the real sandbox: the releaser (its own uid, the data folder mode 0700)
    finds the site's neighbour table through the folder the worker opened for it. The
    table planted here sends every word to one rare word at large epsilon, so an output
    of that word only shows it was read, and not rebuilt."""
    import textwrap

    from datasite.config import TEXT_CACHE_ENV
    from datasite.contract.job import JobSpec, Limits, RequestKind
    from datasite.contract.results import decode_result
    from datasite.execution.executor import LocalExecutor

    tmp_path.chmod(0o700)
    cache = tmp_path / "text-cache"
    real = text.warm_cache(cache, vocabulary=VOCAB)
    marker = VOCAB - 7  # a rare word, not one the notes hold
    k = min(text.NEIGHBOURS + 1, VOCAB)
    np.savez(real, ids=np.full((VOCAB, k), marker), squared=np.full((VOCAB, k), 1e6))
    table = tmp_path / "notes.parquet"
    pd.DataFrame({"text": ["the good film", "a bad day"]}).to_parquet(table)
    source = """
        from researcher_kit import dp

        def f(df):
            return list(dp.privatize_text(df["text"], epsilon=500.0, max_words=5,
                                          vocabulary=VOCABULARY))
    """.replace("VOCABULARY", str(VOCAB))
    spec = JobSpec(job_id="text-cache", source=textwrap.dedent(source), entry="f",
                   kind=RequestKind.BLIND, inputs={"df": str(table)}, epsilon=5000.0,
                   limits=Limits(wall_seconds=120))  # fmt: skip
    with LocalExecutor(concurrency=1, worker_env={TEXT_CACHE_ENV: str(cache)}) as pool:
        result = pool.submit(spec).result()
    assert result.ok, (result.error_type, result.error_message, result.error_detail)
    word = str(emb.words[marker])
    assert decode_result(result.manifest, result.blobs) == [f"{word} {word} {word}"] * 2


def test_a_site_asked_to_warm_the_cache_does_it_in_the_background(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``DATASITE_WARM_TEXT_CACHE``: the site fills its ``text-cache`` folder at startup
    (with a small vocabulary here; the site warms the default one)."""
    from tests.conftest import inprocess

    real = text.warm_cache
    monkeypatch.setattr(text, "warm_cache", lambda folder: real(folder, vocabulary=300))
    for site in inprocess(tmp_path, warm_text_cache=True):
        site.site.background.shutdown(wait=True)  # the warm-up has finished
        files = list(site.settings.text_cache_dir.glob("knn-300x50-*.npz"))
        assert len(files) == 1 and oct(files[0].stat().st_mode & 0o777) == "0o644"
    for site in inprocess(tmp_path / "cold"):
        assert not site.settings.text_cache_dir.exists()  # off by default


def test_a_partitioned_text_column_is_privatized_file_by_file(tmp_path, emb, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A large text column (partition files) goes through the releaser partition by
    partition on a thread pool: every document comes back, privatized, charged once."""
    from datasite.contract.tables import write_partitioned
    from researcher_kit.dp.partitioned import PartitionedTable

    documents = [f"note {i} the patient felt much better today" for i in range(250)]
    table = pa.table({"text": documents, "age": list(range(250))})
    folder = tmp_path / "notes"
    write_partitioned([table], folder, table.schema, rows_per_file=60)
    partitioned = PartitionedTable.from_folder(folder)
    assert len(partitioned.files) == 5

    def whole(*_: object) -> None:
        raise AssertionError("the whole column was loaded at once")

    monkeypatch.setattr(PartitionedTable, "read", whole)
    df = local_frames({"df": partitioned}, epsilon=100.0)["df"]
    out = dp.privatize_text(df["text"], epsilon=2.0, max_words=10, vocabulary=VOCAB)
    releaser = df.channel.releaser
    assert [e.helper for e in releaser.spent.entries] == ["privatize_text"]
    assert releaser.budget.spent_epsilon == pytest.approx(20.0)
    assert len(out) == 250 and sorted(len(d.split()) for d in out) == [8] * 250
    assert {w for d in out for w in d.split()} <= set(emb.words)
    assert not set(documents) & set(out)


# -- the owner's tool through the site ----------------------------------------------------


@pytest.fixture(scope="module")
def notes_dataset(inprocess_study_clients):  # type: ignore[no-untyped-def]
    owner, researcher = inprocess_study_clients
    secret = "zqxsecretmarker"
    real = pd.DataFrame({"note": [f"patient {secret} felt much better today"] * 30 + [None],
                         "age": list(range(31))})  # fmt: skip
    mock = pd.DataFrame({"note": ["lorem ipsum"] * 20, "age": list(range(20))})
    name = "Clinic notes"
    owner.datasets.upload(name=name, assets={"notes": (real, mock)}, progress=False)
    return owner, researcher, name, secret


def test_the_owner_publishes_a_privatized_mock_column(notes_dataset) -> None:  # type: ignore[no-untyped-def]
    owner, researcher, name, secret = notes_dataset
    report = owner.datasets.text_report(name, "note", epsilons=[5.0, 500.0], words=["good"])
    assert report["documents"] == 31 and set(report["words_changed"]) == {"5", "500"}
    assert report["words_changed"]["500"] < report["words_changed"]["5"]
    assert [r["word"] for r in report["replacements"]][:1] == ["good"]
    done = owner.datasets.privatize_text(name, "note", epsilon=2.0, max_words=10,
                                         vocabulary=VOCAB)  # fmt: skip
    assert done["epsilon"] == pytest.approx(20.0) and done["unit"] == "word"
    mock = researcher.datasets[name].assets["notes"].mock
    assert len(mock) == 20 and list(mock["age"]) == list(range(20))  # the rest is kept
    words = {w for doc in mock["note"] for w in doc.split()}
    assert secret not in words and "lorem" not in words
    event = owner.audit(target_id=name)[0]
    assert event["action"] == "dataset.text_privatized"
    assert event["detail"]["epsilon"] == pytest.approx(20.0)
    with pytest.raises(DatasiteError) as forbidden:
        researcher.session.post(f"/datasets/{name}/private-text",
                                json={"column": "note", "epsilon": 1.0})  # fmt: skip
    assert forbidden.value.status == 403


def test_bad_text_requests_are_refused_and_change_nothing(notes_dataset) -> None:  # type: ignore[no-untyped-def]
    owner, researcher, name, _ = notes_dataset
    before_mock = researcher.datasets[name].assets["notes"].mock
    before_audit = owner.audit(target_id=name)
    for body, message in [
        ({"column": "age", "epsilon": 1.0}, "not text"),
        ({"column": "diagnosis", "epsilon": 1.0}, "'diagnosis'"),
        ({"column": "note", "epsilon": 0}, "epsilon"),
        ({"column": "note", "epsilon": 1.0, "unit": "sentence"}, "unit"),
        ({"column": "note", "epsilon": 1.0, "code": "x"}, "code"),
    ]:
        with pytest.raises(DatasiteError) as refused:
            owner.session.post(f"/datasets/{name}/private-text", json=body)
        assert refused.value.status == 422 and message in str(refused.value), body
    with pytest.raises(DatasiteError) as report:
        owner.datasets.text_report(name, "note", epsilons=[0.0])
    assert report.value.status == 422
    assert owner.audit(target_id=name) == before_audit
    assert researcher.datasets[name].assets["notes"].mock.equals(before_mock)


def test_the_cli_publishes_a_privatized_column(inprocess_site, notes_dataset, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from datasite.cli import app
    from tests.conftest import cli_as_owner

    owner, _, name, _ = notes_dataset
    cli_as_owner(monkeypatch, inprocess_site.url)
    args = ["datasets", "privatize-text", name, "--column", "note", "--epsilon", "5"]
    done = CliRunner().invoke(app, [*args, "--unit", "document", "--max-words", "10"])
    assert done.exit_code == 0, done.output
    assert "metric DP per document; one document composes to epsilon=5" in done.output
    assert owner.audit(target_id=name)[0]["detail"]["unit"] == "document"
    refused = CliRunner().invoke(app, [*args[:-1], "0"])
    assert refused.exit_code == 1 and "epsilon" in refused.output
