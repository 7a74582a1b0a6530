"""lambda-sink operator: reconciles LambdaSink resources into worker Deployments (kopf)."""

__version__ = "0.1.0"
