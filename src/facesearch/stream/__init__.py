"""Tier 3, the Kafka loop (beside the gRPC edge; neither imports the other):
``worker.StreamWorker`` (consume, handle, produce, commit after the broker's acknowledgement,
dead letters, retries and pauses) and the pure ``handlers`` each stage runs in it. Imports the
codecs and the core."""
