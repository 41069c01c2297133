"""Link the faces of a video's sampled frames into tracks (one person, one stretch of time),
so a video stores a few good faces per track rather than every face of every frame.

A face joins the open track it resembles most: by embedding (cosine similarity), helped by box
overlap (IoU) between neighbouring samples of the same shot. A track that finds no face for
``max_misses`` samples in a row is closed. Pure code: no models, no video.
"""

from dataclasses import dataclass, field

import numpy as np

from facesearch.records import Box


@dataclass(frozen=True)
class TrackerSettings:
    # Same-person faces of one video score well above LFW's 0.253 across samples half a second
    # apart (0.41-0.73 for one speaker in the Hamilton clip, whose head moved too far for the
    # boxes to overlap); 0.4 alone links them, still far above LFW's 1%-false-accept 0.186. A
    # box that barely moved vouches for a lower score (a turned head, motion blur).
    min_similarity: float = 0.4
    min_similarity_overlapping: float = 0.25
    min_iou: float = 0.3
    max_misses: int = 3  # samples in a row without a face: the track ends
    keep: int = 3  # best faces kept (and stored) per track


@dataclass(frozen=True)
class Observation:
    """One face of one sampled frame; ``vector`` is L2-normalised."""

    ms: int
    box: Box
    quality: float
    det_score: float
    vector: np.ndarray


@dataclass
class Track:
    track_id: int
    first_ms: int
    last_ms: int
    best: list[Observation]  # at most ``keep``, best quality first
    last_box: Box
    recent: np.ndarray  # the latest face's vector
    misses: int = 0
    faces_seen: int = 1

    @property
    def best_ms(self) -> int:
        return self.best[0].ms


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes (0 when either is empty)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


@dataclass
class Tracker:
    """Feed it each sampled frame's faces in time order (``update``), then ``finish``."""

    settings: TrackerSettings = field(default_factory=TrackerSettings)
    open: list[Track] = field(default_factory=list)
    closed: list[Track] = field(default_factory=list)
    next_id: int = 0

    def update(self, observations: list[Observation], cut: bool = False) -> None:
        """One sampled frame. After a scene ``cut`` boxes say nothing: only faces link."""
        pairs = self._candidates(observations, cut)
        taken_tracks: set[int] = set()
        taken_faces: set[int] = set()
        for _, t, o in sorted(pairs, key=lambda p: -p[0]):
            if t in taken_tracks or o in taken_faces:
                continue
            taken_tracks.add(t)
            taken_faces.add(o)
            self._extend(self.open[t], observations[o])
        self._age(taken_tracks)
        for o, observation in enumerate(observations):
            if o not in taken_faces:
                self._start(observation)

    def finish(self) -> list[Track]:
        """Every track, in order of first appearance (then id)."""
        tracks = self.closed + self.open
        self.closed, self.open = [], []
        return sorted(tracks, key=lambda t: (t.first_ms, t.track_id))

    def _candidates(
        self, observations: list[Observation], cut: bool
    ) -> list[tuple[float, int, int]]:
        """(score, track, face) for every pair that may link; the score ranks them."""
        pairs = []
        for t, track in enumerate(self.open):
            for o, observation in enumerate(observations):
                similarity = float(np.dot(track.recent, observation.vector))
                overlap = 0.0 if cut else iou(track.last_box, observation.box)
                if self._links(similarity, overlap):
                    pairs.append((similarity + overlap, t, o))
        return pairs

    def _links(self, similarity: float, overlap: float) -> bool:
        s = self.settings
        return similarity >= s.min_similarity or (
            overlap >= s.min_iou and similarity >= s.min_similarity_overlapping
        )

    def _extend(self, track: Track, observation: Observation) -> None:
        track.last_ms = observation.ms
        track.last_box = observation.box
        track.recent = observation.vector
        track.misses = 0
        track.faces_seen += 1
        ranked = sorted([*track.best, observation], key=lambda o: (-o.quality, o.ms))
        track.best = ranked[: self.settings.keep]

    def _age(self, matched: set[int]) -> None:
        still_open = []
        for t, track in enumerate(self.open):
            if t not in matched:
                track.misses += 1
            if track.misses >= self.settings.max_misses:
                self.closed.append(track)
            else:
                still_open.append(track)
        self.open = still_open

    def _start(self, observation: Observation) -> None:
        track = Track(
            track_id=self.next_id,
            first_ms=observation.ms,
            last_ms=observation.ms,
            best=[observation],
            last_box=observation.box,
            recent=observation.vector,
        )
        self.next_id += 1
        self.open.append(track)
