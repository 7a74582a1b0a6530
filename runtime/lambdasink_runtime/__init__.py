"""lambda-sink worker runtime: Pulsar topics → JSON → batches → AWS Lambda, at least once."""

__version__ = "0.1.0"
