"""Distractor faces that behave like faces, for galleries larger than the real data.

Real embeddings are not isotropic: faces of one person cluster, and people spread along the
directions the model learnt, not evenly over the sphere. Isotropic random vectors are HNSW's
worst case and score like no face (every pair near 0), so they say nothing about recall or
false matches. Instead a two-level Gaussian is fitted to real labelled embeddings:

- identity centres ~ N(mean, B): ``B`` the covariance of the people's mean embeddings, less the
  part of it their own photos' spread explains (W / n per person);
- faces of one identity ~ N(centre, W): ``W`` the pooled covariance of the photos of each
  person with two or more around that person's mean;

both shrunk a little towards a multiple of the identity (``SHRINK``), which keeps them positive
definite where 512 dimensions outnumber the people. A sampled face is normalised to unit length,
as the model's own embeddings are. ``score_summary`` compares real and sampled score
distributions (the README shows them).
"""

from collections import Counter
from dataclasses import dataclass

import numpy as np

SHRINK = 0.05  # weight of the scaled identity in each covariance


@dataclass(frozen=True)
class FaceModel:
    mean: np.ndarray  # (d,) the mean of the identity centres
    between: np.ndarray  # (d, d) Cholesky factor of B
    within: np.ndarray  # (d, d) Cholesky factor of W
    photos_per_person: np.ndarray  # the photo counts of the real people, to draw sizes from

    def sample(self, rng: np.random.Generator, faces: int) -> tuple[np.ndarray, np.ndarray]:
        """``faces`` unit vectors, and the synthetic identity of each (0, 1, ...): people of as
        many photos as the real ones have."""
        sizes: list[int] = []
        while sum(sizes) < faces:
            sizes.extend(rng.choice(self.photos_per_person, size=1024).tolist())
        counts = np.array(sizes)
        counts = counts[: int(np.searchsorted(np.cumsum(counts), faces)) + 1]
        identity = np.repeat(np.arange(len(counts)), counts)[:faces]
        dim = len(self.mean)
        centres = self.mean + rng.standard_normal((len(counts), dim)) @ self.between.T
        vectors = centres[identity] + rng.standard_normal((faces, dim)) @ self.within.T
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors.astype(np.float32), identity


def _shrunk(cov: np.ndarray) -> np.ndarray:
    scale = float(np.trace(cov)) / len(cov)
    return (1 - SHRINK) * cov + SHRINK * scale * np.eye(len(cov))


def _psd(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    psd: np.ndarray = (vectors * np.clip(values, 0, None)) @ vectors.T
    return psd


def fit(vectors: np.ndarray, labels: list[str]) -> FaceModel:
    """The two-level Gaussian of the module docstring, from unit embeddings and their people."""
    x = vectors.astype(np.float64)
    people = sorted(set(labels))
    index = {person: i for i, person in enumerate(people)}
    rows = np.array([index[label] for label in labels])
    counts = np.bincount(rows, minlength=len(people))
    means = np.zeros((len(people), x.shape[1]))
    np.add.at(means, rows, x)
    means /= counts[:, None]
    residual = x - means[rows]
    several = counts[rows] >= 2
    within = residual[several].T @ residual[several] / max(1, several.sum() - (counts >= 2).sum())
    explained = within * float(np.mean(1.0 / counts))
    between = _psd(np.cov(means, rowvar=False) - explained)
    return FaceModel(
        mean=means.mean(axis=0),
        between=np.linalg.cholesky(_shrunk(between)),
        within=np.linalg.cholesky(_shrunk(within)),
        photos_per_person=np.array(sorted(Counter(labels).values())),
    )


def score_summary(scores: np.ndarray) -> dict[str, float]:
    """What a table of score distributions shows: mean, spread and the upper tail."""
    return {
        "pairs": float(len(scores)),
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "p99": float(np.quantile(scores, 0.99)),
        "p99.9": float(np.quantile(scores, 0.999)),
        "p99.99": float(np.quantile(scores, 0.9999)),
        "max": float(scores.max()),
    }


def pair_scores(
    vectors: np.ndarray, identity: np.ndarray, limit: int = 3000
) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor cosine scores among the first ``limit`` vectors."""
    v, ids = vectors[:limit], identity[:limit]
    scores = v @ v.T
    upper = np.triu_indices(len(v), k=1)
    same = ids[upper[0]] == ids[upper[1]]
    return scores[upper][same], scores[upper][~same]
