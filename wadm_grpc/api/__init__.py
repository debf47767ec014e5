"""Delivery adapters: gRPC (api/grpc) and, later, the HTTP/JSON gateway (api/http)."""
