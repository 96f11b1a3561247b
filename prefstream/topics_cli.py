"""`prefstream topics ensure`: create missing topics and report mismatches (exit 1 when any).
`prefstream topics manifest`: print Strimzi `KafkaTopic` resources for every topic (prefstream.manifests)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "topics manifest":
        parser.add_argument(
            "--cluster", default="kafka", help="the Strimzi Kafka cluster (label strimzi.io/cluster); default: kafka"
        )


def run(args: argparse.Namespace) -> int:
    if args.command == "topics manifest":
        from prefstream.manifests import kafka_topics, to_yaml

        print(to_yaml(kafka_topics(args.settings, args.cluster)), end="")
        return 0
    from prefstream.topics import ensure_topics

    reports = ensure_topics(args.settings)
    for report in reports:
        print(report)
    return 1 if any(r.action == "mismatch" for r in reports) else 0
