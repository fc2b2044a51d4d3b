r"""A fake Kubernetes for tests: an API server the official client talks to over HTTP, and a kubelet.

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
        kube.errors                              # requests the fake itself failed on (a bug: answered 500)

    from tests.fakekube import Kubelet

    with Kubelet(kube, "fns", {"PYTHONPATH": repo, "KAMBDA_NATS_URL": nats_url},
                 log_dir=tmp_path, ready_when=r"invoker \S+ ready") as kubelet:
        ...                                      # each pod of "fns" runs as a local process
        kubelet.processes()                      # {pod name: PodProcess(pid, argv, env, log())} running now
        kubelet.node_name                        # the spec.nodeName of the pods it runs
        kubelet.history()                        # every process started, ended ones too
        kubelet.logs()                           # their output, for an assertion message

Served: core/v1 pods, services, configmaps, secrets, serviceaccounts, namespaces; apps/v1
deployments (+ ``/scale``, ``/status``); coordination.k8s.io/v1 leases. Namespaces are created on
first use. List paging (limit/continue) is not implemented: a list answers every item. A mini
ReplicaSet controller keeps each Deployment's pods (Pending until a kubelet makes them Ready);
see replicasets.py for what it does and where it differs from the real one. A pod that a Kubelet
runs (bound: ``spec.nodeName``) is deleted gracefully: Terminating (``deletionTimestamp``) until
its process has stopped; other pods, and every other kind, go at once. Dependents (by
ownerReferences) are deleted with their owner unless ``propagationPolicy`` is Orphan. Server-side
apply answers 415.

Good to know when testing a client: the official client's urllib3 itself retries a 429 (or a 503)
that carries Retry-After on idempotent verbs (GET, PUT, DELETE), so a caller sees such
a 429 only on POST and PATCH, or once urllib3's 3 retries are spent (``count=4``). A 500, or a 503
injected without ``retry_after``, reaches the caller on every verb.
"""

from .kubelet import Kubelet, PodProcess
from .objects import ApiError
from .server import FakeKube
from .store import Store

__all__ = ["ApiError", "FakeKube", "Kubelet", "PodProcess", "Store"]
