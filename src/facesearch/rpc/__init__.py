"""Tier 3, the gRPC edge (beside the Kafka loop; neither imports the other): errors to and from
status codes and the request metrics interceptor (``edge``), the services' typed settings
(``settings``), the health probe (``health``) and the public API's typed client (``client``).
Imports the codecs and the core."""
