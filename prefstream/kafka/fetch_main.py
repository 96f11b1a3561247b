"""`python -m prefstream.kafka.fetch_main`: fetch the broker jars (used by scripts/bootstrap)."""

from prefstream.kafka.local import fetch

if __name__ == "__main__":
    print(fetch())
