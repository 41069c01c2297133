"""Opt-out through the public API on the real pipeline (the four services as processes on the
real broker): the indexed faces that match are erased at once with a receipt, a face indexed
after is kept out (``opted_out`` in GetImage's unindexed faces), Search finds nothing for the
face at any threshold, Compare leaves it out; list and remove."""

from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from gateway_checks import index, settled

from facesearch.proto.v1 import api_pb2, api_pb2_grpc


def test_an_opt_out_erases_keeps_out_and_withholds_the_face_through_the_services(
    gateway: api_pb2_grpc.FaceSearchStub, demo: dict[str, Path], analyzed: dict[str, Any]
) -> None:
    players, yao = demo["players"].read_bytes(), demo["yaoming"].read_bytes()
    everyone = len(analyzed["players"][0].faces)
    (before,) = index(gateway, api_pb2.IndexRequest(data=players, path="players.jpg"))
    assert settled(gateway, before.image_id).status == api_pb2.IMAGE_STATUS_INDEXED

    with pytest.raises(grpc.RpcError) as several:
        gateway.OptOut(api_pb2.OptOutRequest(image=players))
    assert several.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"has {everyone} faces; say which with --face-index" in str(several.value.details())
    assert gateway.ListOptOuts(api_pb2.ListOptOutsRequest()).entries == []

    added = gateway.OptOut(api_pb2.OptOutRequest(image=yao, note="ticket 1"))
    erased = added.erased
    assert (erased.faces, erased.images, dict(erased.collections)) == (1, 1, {"default": 1})
    assert erased.receipt_id and erased.erased_at
    record = gateway.GetImage(api_pb2.GetImageRequest(image_id=before.image_id))
    assert record.image.faces == len(record.faces) == everyone - 1
    assert [u.rejection.reason for u in record.image.unindexed] == ["opted_out"]
    yao_index = int(np.argmax(analyzed["players"][1] @ analyzed["yaoming"][1][0]))
    assert record.image.unindexed[0].face_index == yao_index

    found = gateway.Search(api_pb2.SearchRequest(image=yao, top_k=5, threshold=-1.0))
    assert [len(face.matches) for face in found.faces] == [0]
    others = gateway.Search(api_pb2.SearchRequest(image=players, top_k=1, threshold=0.99))
    assert sum(len(face.matches) for face in others.faces) == everyone - 1

    (after,) = index(gateway, api_pb2.IndexRequest(data=yao, path="yaoming.jpg"))
    kept_out = settled(gateway, after.image_id)
    assert kept_out.status == api_pb2.IMAGE_STATUS_INDEXED
    assert (kept_out.image.faces, list(kept_out.faces)) == (0, [])
    assert [u.rejection.reason for u in kept_out.image.unindexed] == ["opted_out"]

    compared = gateway.Compare(api_pb2.CompareRequest(image_a=players, image_b=yao))
    assert (len(compared.faces_a), len(compared.faces_b), len(compared.pairs)) == (
        everyone - 1,
        0,
        0,
    )

    (entry,) = gateway.ListOptOuts(api_pb2.ListOptOutsRequest()).entries
    assert (entry.optout_id, entry.note) == (added.entry.optout_id, "ticket 1")
    gateway.RemoveOptOut(api_pb2.RemoveOptOutRequest(optout_id=entry.optout_id))
    assert gateway.ListOptOuts(api_pb2.ListOptOutsRequest()).entries == []
    with pytest.raises(grpc.RpcError) as gone:
        gateway.RemoveOptOut(api_pb2.RemoveOptOutRequest(optout_id=entry.optout_id))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    found = gateway.Search(api_pb2.SearchRequest(image=yao, top_k=5))
    assert [m.image_id for m in found.faces[0].matches] == []  # erased faces stay erased


def test_an_opt_out_photo_without_a_face_is_refused_and_changes_nothing(
    gateway: api_pb2_grpc.FaceSearchStub, grey_jpeg: Any, tmp_path: Path
) -> None:
    grey = grey_jpeg(tmp_path / "grey.jpg").read_bytes()
    with pytest.raises(grpc.RpcError) as refused:
        gateway.OptOut(api_pb2.OptOutRequest(image=grey))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no face found in the opt-out photo" in str(refused.value.details())
    assert gateway.ListOptOuts(api_pb2.ListOptOutsRequest()).entries == []
