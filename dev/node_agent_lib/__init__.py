"""Library behind dev/node_agent.py (a local kubelet stand-in for the dev stack)."""
