"""A fake Kubernetes for tests: an API server the official client talks to over HTTP, and a kubelet.

Usage::

    from tests.fakekube import FakeKube

    with FakeKube() as kube:                      # starts on 127.0.0.1:<free port>, in a thread
        apps = kubernetes.client.AppsV1Api(kube.api_client())
        apps.create_namespaced_deployment("fns", body)           # the real client, unchanged
        kube.write_kubeconfig(tmp_path / "kubeconfig")           # for a controller process
        kube.pods("fns", "app=x")                # the pods now, as dicts (label selector optional)
        kube.store.get("deployments", "fns", "x")               # direct access, no HTTP
        kube.store.mutate("pods", "fns", name, fn)             # change an object behind the client's back
        kube.store.delete("deployments", "fns", "x")           # e.g. a Deployment deleted by someone else
        kube.drop_watches()                      # cut every open watch stream
        kube.inject_errors(r"/deployments", 429, count=3)      # next 3 matching requests: 429 (also 500, 409)
        kube.compact()                           # old resourceVersions now answer 410 Gone
        kube.requests                            # [(method, path?query), ...] seen so far

Served: core/v1 pods, services, configmaps, secrets, serviceaccounts, namespaces; apps/v1
deployments (+ ``/scale``, ``/status``); coordination.k8s.io/v1 leases. Namespaces are created on
first use. A mini ReplicaSet controller keeps each Deployment's pods (Pending until a kubelet
makes them Ready); see replicasets.py for what it does and where it differs from the real one.
"""

from .objects import ApiError
from .server import FakeKube
from .store import Store

__all__ = ["ApiError", "FakeKube", "Store"]
