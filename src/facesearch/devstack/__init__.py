"""Tier 5, development infrastructure: the Kafka broker from Maven Central's jars (``broker``),
background processes (``processes``) and the local stack of broker and services (``stack``)."""
