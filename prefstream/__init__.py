"""prefstream: streaming continual personalization on Kafka."""

__version__ = "0.1.0"
