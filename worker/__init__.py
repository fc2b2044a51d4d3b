"""The worker tier: N replicas sharing JetStream consumers (async invokes, event routing, event
source mappings); see worker/__main__.py."""
