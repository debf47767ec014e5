"""Services: one per concern, each method an RPC in snake_case. They use ports and know no gRPC."""
