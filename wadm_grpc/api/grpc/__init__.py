"""The gRPC API: servicers, conversions, the error table and the server factory."""
