"""Tier 2, conversions: Kafka events (``events``) and public API messages (``api``) to and from
the core's records. Imports the core and the generated ``facesearch.proto`` only."""
