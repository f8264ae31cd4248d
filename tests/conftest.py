import os

# Tests never touch the network: a missing dataset must fail fast, not download.
os.environ.setdefault("MLCOURSE_OFFLINE", "1")
