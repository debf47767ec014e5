"""`make bench`: performance as ratios against baselines measured side by side in the same run."""

import os

# gRPC core logs each GOAWAY of a stopping server at INFO; the tables are the output.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
