"""Operating points measured on labelled data (see README, "Accuracy").

``LFW_THRESHOLD`` is the cosine similarity that ``facesearch eval lfw`` chose on LFW View 1 test
(deep-funneled, 1,000 pairs, ../shared/data/faces/lfw-devtest) with the bundled buffalo_s models:
the threshold that maximises verification accuracy over all pairs. Two faces at or above it are
called the same person. ``compare``'s default tolerance is the same point as a distance.
"""

LFW_THRESHOLD = 0.253


def similarity_to_distance(similarity: float) -> float:
    """Cosine distance, the scale ``compare --tolerance`` speaks (lower is more alike)."""
    return 1.0 - similarity


DEFAULT_TOLERANCE = round(similarity_to_distance(LFW_THRESHOLD), 3)
