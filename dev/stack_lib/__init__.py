"""Helpers for dev/stack: the local real stack (Pulsar, etcd + Kubernetes API, Lambda)."""
