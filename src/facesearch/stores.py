"""Which face store the settings ask for: the Qdrant server at ``QDRANT_URL`` when it is set,
else the embedded index of the data folder, on qdrant-client's local mode in ``qdrant/``
(``FACESEARCH_STORE=local``, the default) or on Qdrant Edge in ``edge/`` (``edge``)."""

from facesearch.edge_store import EdgeFaceStore
from facesearch.settings import CoreSettings
from facesearch.store import FaceStore, QdrantFaceStore


def open_store(settings: CoreSettings, model_id: str, dim: int) -> FaceStore:
    if settings.qdrant_url or settings.store == "local":
        return QdrantFaceStore.open(model_id, dim, settings.qdrant_path, settings.qdrant_url)
    return EdgeFaceStore.open(model_id, dim, settings.edge_path, hnsw=settings.hnsw)
