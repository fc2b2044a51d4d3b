"""The Kubernetes orchestrator and leader election: pure parts first, then against the fake API server.

The fake (tests/fakekube) serves the real REST paths and JSON over HTTP, and the official client
talks to it; NATS is real where assignments travel.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from controller.orchestrators import k8s_objects as objects
from controller.orchestrators.k8s_api import BACKOFF, backoff_delay
from controller.settings import ControllerSettings, KubernetesSettings
from kambda.settings import SettingsError

# -- names, labels and manifests ------------------------------------------------------------------

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"


def test_deployment_names_are_dns_labels_and_unique() -> None:
    import re

    names = {objects.deployment_name(f, v) for f, v in [
        ("hello", "$LATEST"), ("Hello", "$LATEST"), ("hello_", "$LATEST"), ("hello", "1"), ("x" * 64, "$LATEST"),
        ("_-_", "$LATEST"), ("a.b", "7")]}
    assert len(names) == 7
    for name in names:
        assert len(name) <= 63 and re.fullmatch(_DNS_LABEL, name), name
    assert objects.deployment_name("hello", "$LATEST") == objects.deployment_name("hello", "$LATEST")


def test_label_values_are_valid_for_any_function_name() -> None:
    import re

    for value in ["hello", "$LATEST", "_x_", "-", "a" * 64, "Fn-1_2"]:
        label = objects.label_value(value)
        assert len(label) <= 63 and re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", label), (value, label)
    assert objects.label_value("hello") == "hello"
    assert objects.label_value("$LATEST") != objects.label_value("LATEST")


def test_function_deployment_is_labelled_locked_down_and_selects_only_its_own_pods() -> None:
    settings = KubernetesSettings(namespace="fns", invoker_image="kambda:1", nats_url="nats://nats:4222")
    d = objects.function_deployment(settings, "hello", "$LATEST", "python3.12", 3)
    meta = d["metadata"]
    assert meta["namespace"] == "fns" and d["spec"]["replicas"] == 3
    assert meta["labels"][objects.PART_OF] == "kambda" and meta["labels"][objects.ROLE] == "function"
    assert objects.function_key(d) == ("hello", "$LATEST")
    template = d["spec"]["template"]
    selector = d["spec"]["selector"]["matchLabels"]
    assert all(template["metadata"]["labels"][k] == v for k, v in selector.items())
    assert objects.INSTANCE in selector  # claimed pool pods (which lack it) are never adopted by its ReplicaSet
    spec = template["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["command"] == ["kambda-invoker"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in spec["volumes"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KAMBDA_INVOKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["KAMBDA_NATS_URL"]["value"] == "nats://nats:4222"


def test_pod_template_setting_merges_into_every_pod() -> None:
    template = {"nodeSelector": {"pool": "fn"},
                "containers": [{"name": "invoker", "resources": {"limits": {"memory": "512Mi"}},
                                "env": [{"name": "KAMBDA_ZYGOTE", "value": "false"}]}]}
    settings = KubernetesSettings(pod_template=template)
    for d in (objects.function_deployment(settings, "f", "$LATEST", "python3.12", 1),
              objects.pool_deployment(settings, "python3.12")):
        spec = d["spec"]["template"]["spec"]
        assert spec["nodeSelector"] == {"pool": "fn"}
        (container,) = spec["containers"]
        assert container["resources"]["limits"]["memory"] == "512Mi"
        names = [e["name"] for e in container["env"]]
        assert "KAMBDA_ZYGOTE" in names and "KAMBDA_INVOKER_ID" in names
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_a_changed_template_is_seen_through_server_defaults() -> None:
    settings = KubernetesSettings()
    wanted = objects.function_deployment(settings, "f", "$LATEST", "python3.12", 1)
    stored = objects.function_deployment(settings, "f", "$LATEST", "python3.12", 5)
    stored["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"  # what an API server adds
    assert not objects.template_differs(stored, wanted)
    other = objects.function_deployment(KubernetesSettings(invoker_image="kambda:2"), "f", "$LATEST", "python3.12", 1)
    assert objects.template_differs(stored, other)


def test_claiming_moves_a_pod_out_of_the_pool_selector_and_into_the_function() -> None:
    from tests.fakekube.patches import merge_patch

    pool = objects.pool_deployment(KubernetesSettings(), "python3.12")
    pod = {"metadata": {"name": "kambda-pool-python3-12-abc", "resourceVersion": "7",
                        "labels": dict(pool["spec"]["template"]["metadata"]["labels"]),
                        "ownerReferences": [{"kind": "ReplicaSet", "name": "rs"}]}}
    patch = objects.claim_patch(pod, "hello", "$LATEST")
    assert patch["metadata"]["resourceVersion"] == "7"  # the update is guarded: a racing claim loses
    claimed = merge_patch(pod, patch)
    labels = claimed["metadata"]["labels"]
    assert any(labels.get(k) != v for k, v in pool["spec"]["selector"]["matchLabels"].items())
    assert labels[objects.ROLE] == "function" and labels[objects.CLAIMED] == "true"
    assert objects.function_key(claimed) == ("hello", "$LATEST")
    assert "ownerReferences" not in claimed["metadata"]


# -- backoff and settings ------------------------------------------------------------------------

def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(i, None, rng) for i in range(len(BACKOFF) + 2)]
    for i, delay in enumerate(delays):
        base = BACKOFF[min(i, len(BACKOFF) - 1)]
        assert 0.75 * base <= delay <= 1.25 * base
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, not a fixed sequence
    assert backoff_delay(0, 4.0, rng) == 4.0


def test_kubernetes_settings_from_env(tmp_path: Path) -> None:
    ns_file = tmp_path / "namespace"
    ns_file.write_text("kambda-fns\n")
    s = KubernetesSettings.from_env({"KAMBDA_K8S_POOL_RUNTIMES": "python3.12, python3.13",
                                     "KAMBDA_K8S_POD_TEMPLATE": '{"nodeSelector": {"a": "b"}}',
                                     "KAMBDA_K8S_POOL_SIZE": "0"}, "nats://x:4222", ns_file)
    assert s.namespace == "kambda-fns" and s.pod_namespace == "kambda-fns"
    assert s.pool_runtimes == ("python3.12", "python3.13") and s.pool_size == 0
    assert s.pod_template == {"nodeSelector": {"a": "b"}} and s.nats_url == "nats://x:4222"
    assert not s.leader_election and s.lease_name == "kambda-controller"
    s = KubernetesSettings.from_env({"KAMBDA_K8S_NATS_URL": "nats://pods:4222"}, "nats://x:4222",
                                    tmp_path / "missing")
    assert s.namespace == "default" and s.nats_url == "nats://pods:4222" and s.pool_size == 2
    assert ControllerSettings.from_env({"KAMBDA_ORCHESTRATOR": "kubernetes"}).orchestrator == "kubernetes"


@pytest.mark.parametrize("environ, key", [
    ({"KAMBDA_ORCHESTRATOR": "nomad"}, "KAMBDA_ORCHESTRATOR"),
    ({"KAMBDA_K8S_POD_TEMPLATE": "{nope"}, "KAMBDA_K8S_POD_TEMPLATE"),
    ({"KAMBDA_K8S_POD_TEMPLATE": "[1]"}, "KAMBDA_K8S_POD_TEMPLATE"),
    ({"KAMBDA_K8S_POOL_SIZE": "-1"}, "KAMBDA_K8S_POOL_SIZE"),
    ({"KAMBDA_LEADER_ELECTION": "true"}, "KAMBDA_POD_NAME"),
])
def test_bad_kubernetes_settings_name_the_key(environ: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError, match=key):
        ControllerSettings.from_env(environ)
