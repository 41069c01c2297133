"""Layer 3, the Kafka loop: ``worker.StreamWorker`` (consume, handle, produce, commit after the
broker's acknowledgement, dead letters, retries and pauses) and the pure ``handlers`` each
stage runs in it. Imports the codecs and the core."""
