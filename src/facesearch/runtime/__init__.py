"""Tier 4, a service process: its gRPC server, its stream workers, health, metrics endpoint
and signal handling (``service``). The only one that joins the Kafka loop and the gRPC edge."""
