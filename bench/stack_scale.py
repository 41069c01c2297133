"""The gateway's Search end to end against a large gallery, through the local stack.

The gallery is built as bench/scale.py builds it (every real face of the data folder plus
distractors from the fitted model, ``--faces`` in all), written straight into the Qdrant Edge
index of a fresh data folder; then ``facesearch stack up`` starts the broker and the four
services on it, and ``--queries`` lfw-devtest photos are sent to the gateway's Search one at a
time (each a detection, an embedding and a vector search across three services, top 10):
p50 / p99 wall time per call, and each service's mean server-side time.

    .venv/bin/python bench/stack_scale.py [--faces 100000] [--queries 200]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DEFAULT_DATA, lfw_images
from distractors import fit
from facesearch.devstack.broker import free_port
from facesearch.devstack.stack import Stack
from facesearch.edge_store import EdgeFaceStore
from facesearch.models import FaceModels
from facesearch.rpc.client import GatewayClient
from facesearch.settings import CoreSettings
from scale import build, gallery_of, real_faces
from stack import stack_env, time_searches


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--faces", type=int, default=100_000, help="faces in the gallery")
    parser.add_argument("--queries", type=int, default=200, help="Search calls to time")
    args = parser.parse_args()
    settings = CoreSettings.from_env()
    models = FaceModels(settings.models)
    real = real_faces(args.data, models, settings)
    labelled = real.person >= 0
    model = fit(real.vectors[labelled], [str(p) for p in real.person[labelled]])
    rng = np.random.default_rng(args.faces)
    gallery, _ = gallery_of(real, np.arange(len(real.person)), model, args.faces, rng)
    model_id, dim = models.model_id, models.dim
    del models  # the stack's processes get the cores and memory from here on
    queries = lfw_images(args.data / "lfw-devtest")[::7][: args.queries]
    with tempfile.TemporaryDirectory(prefix="facesearch-bench-stack-scale-") as tmp:
        home = Path(tmp)
        store = EdgeFaceStore.open(model_id, dim, home / "edge")
        begun = time.perf_counter()
        try:
            build(store, gallery, model_id)
        finally:
            store.close()
        print(f"gallery            {len(gallery)} faces in {time.perf_counter() - begun:.0f} s")
        stack = Stack(
            home, env=stack_env(home), kafka_port=free_port(), controller_port=free_port()
        )
        stack.up()
        try:
            ports = {s.name: s for s in stack.status()}
            with GatewayClient(ports["gateway"].address, timeout_s=120) as client:
                time_searches(stack, client, queries, client.stats().faces)
        finally:
            stack.down()


if __name__ == "__main__":
    main()
