"""ImageRecord payloads: what the store writes reads back as the same record."""

from facesearch.records import ImageMeta, ImageRecord


def test_image_record_round_trips_through_its_payload() -> None:
    record = ImageRecord(
        image_id="ab" * 32,
        meta=ImageMeta(
            source_uri="https://x/y.jpg", path="/tmp/y.jpg", label="ann", collection="c"
        ),
        faces=2,
        model="model-1",
        width=640,
        height=480,
        ingested_at="2024-01-01T00:00:00+00:00",
    )
    payload = record.payload()
    assert payload["label"] == "ann"
    assert payload["source_uri"] == "https://x/y.jpg"
    assert payload["collection"] == "c"
    assert ImageRecord.from_payload(payload) == record


def test_image_record_from_a_sparse_payload_takes_defaults() -> None:
    record = ImageRecord.from_payload({"image_id": "cd" * 32, "faces": "3"})
    assert record.image_id == "cd" * 32
    assert record.faces == 3
    assert record.meta == ImageMeta(source_uri="")
    assert record.meta.collection == "default"
    assert (record.width, record.height, record.model) == (0, 0, "")
