"""Layer 5, a service process: its gRPC server, its stream workers, health, metrics endpoint
and signal handling (``service``). The only layer that joins the Kafka loop and the gRPC edge."""
