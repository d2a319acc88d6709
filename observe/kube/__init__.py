"""Reaching a workload cluster's services through its Kubernetes API server (service and pod proxy)."""
