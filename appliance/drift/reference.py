"""A model's reference distribution: what "no drift" looks like.

A reference is a sample of rows (features as columns) plus the model's prediction for
each row where known: uploaded (``PUT /v1/drift/{model}/reference``, ``appliance drift
set-reference``) or captured from the first ``capture_rows`` production rows. Its
per-feature PSI bin edges (quantiles) and bin shares are computed once, when it is
stored, and kept beside the sample; a window's KS needs the sample itself. Samples above
:data:`MAX_ROWS` are cut down by a seeded draw without replacement, so KS keeps scipy's
exact distribution (up to 10,000 rows) and memory stays bounded.

Serialized as one ``.npz`` blob (:meth:`Reference.to_bytes`), so storing is one SQLite
write and reading back gives the same float64 bits.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..errors import BadRequest
from .stats import FloatArray, bin_shares, distinct_bins, quantile_edges

MAX_ROWS = 10_000
MIN_ROWS = 10


@dataclass(frozen=True)
class Reference:
    features: tuple[str, ...]
    #: rows x features, float64
    sample: FloatArray
    #: the prediction of each row (empty when unknown)
    prediction: FloatArray
    bins: int
    #: features x (bins - 1) inner edges, features x bins reference shares
    edges: FloatArray
    shares: FloatArray
    prediction_edges: FloatArray
    prediction_shares: FloatArray
    source: str

    @property
    def rows(self) -> int:
        return int(self.sample.shape[0])

    def describe(self) -> dict[str, object]:
        """Size, source and bins (with how many distinct bins tied values leave)."""
        tied = {f: distinct_bins(self.edges[j]) for j, f in enumerate(self.features)
                if distinct_bins(self.edges[j]) < self.bins}
        return {"rows": self.rows, "source": self.source, "bins": self.bins,
                "features": len(self.features), "prediction": bool(len(self.prediction)),
                "tied_bins": tied}

    def rebinned(self, bins: int) -> Reference:
        """The same sample with ``bins`` PSI bins (when the configuration changed)."""
        if bins == self.bins:
            return self
        return build_reference(self.features, self.sample, self.prediction, bins=bins,
                               source=self.source)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, sample=self.sample, prediction=self.prediction, edges=self.edges,
                 shares=self.shares, prediction_edges=self.prediction_edges,
                 prediction_shares=self.prediction_shares,
                 features=np.array(self.features, dtype=str),
                 meta=np.array([str(self.bins), self.source], dtype=str))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Reference:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = [str(x) for x in z["meta"]]
            return cls(features=tuple(str(f) for f in z["features"]), sample=z["sample"],
                       prediction=z["prediction"], bins=int(meta[0]), edges=z["edges"],
                       shares=z["shares"], prediction_edges=z["prediction_edges"],
                       prediction_shares=z["prediction_shares"], source=meta[1])


def _bounded(sample: FloatArray, prediction: FloatArray, seed: int
             ) -> tuple[FloatArray, FloatArray]:
    if sample.shape[0] <= MAX_ROWS:
        return sample, prediction
    keep = np.sort(np.random.default_rng(seed).choice(sample.shape[0], MAX_ROWS,
                                                      replace=False))
    return sample[keep], prediction[keep] if len(prediction) else prediction


def build_reference(features: tuple[str, ...], sample: FloatArray, prediction: FloatArray,
                    *, bins: int, source: str, seed: int = 0) -> Reference:
    """A reference from ``sample`` (rows x ``features``) with its bins precomputed;
    BadRequest when the sample has too few rows, the wrong width or non-finite values."""
    sample = np.asarray(sample, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64).reshape(-1)
    if sample.ndim != 2 or sample.shape[1] != len(features):
        raise BadRequest(f"a reference row needs {len(features)} values (one per feature: "
                         f"{', '.join(features[:3])}{', ...' if len(features) > 3 else ''}); "
                         f"got shape {list(sample.shape)}")
    if sample.shape[0] < MIN_ROWS:
        raise BadRequest(f"a reference needs at least {MIN_ROWS} rows; got {sample.shape[0]}")
    if len(prediction) not in (0, sample.shape[0]):
        raise BadRequest(f"the reference has {sample.shape[0]} rows but {len(prediction)} "
                         "predictions: give one per row, or none")
    if not np.isfinite(sample).all() or not np.isfinite(prediction).all():
        raise BadRequest("the reference holds NaN or infinite values; send finite numbers")
    sample, prediction = _bounded(sample, prediction, seed)
    edges = (np.stack([quantile_edges(sample[:, j], bins) for j in range(sample.shape[1])])
             if sample.shape[1] else np.zeros((0, bins - 1)))
    shares = (np.stack([bin_shares(sample[:, j], edges[j]) for j in range(sample.shape[1])])
              if sample.shape[1] else np.zeros((0, bins)))
    p_edges = quantile_edges(prediction, bins) if len(prediction) else np.zeros(0)
    p_shares = bin_shares(prediction, p_edges) if len(prediction) else np.zeros(0)
    return Reference(features, sample, prediction, bins, edges, shares, p_edges, p_shares,
                     source)
