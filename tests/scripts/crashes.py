"""Prints, then fails: the run must be stored as failed with the traceback and the output."""
import sys

print("hello from the script")
print("about to fail", file=sys.stderr)


def load_batch(i):
    raise ValueError(f"corrupt record {i}")


load_batch(7)
