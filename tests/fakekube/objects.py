"""What the API server knows about each kind: paths, defaults, validation, errors as ``Status``."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from .selectors import from_label_selector, matches

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    has_status: bool = False
    #: Metadata names follow DNS-1035 labels (Services) instead of DNS-1123 subdomains.
    dns_label_name: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``deployments.apps``: how error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = {r.plural: r for r in (
    Resource("", "v1", "pods", "Pod", has_status=True),
    Resource("", "v1", "services", "Service", has_status=True, dns_label_name=True),
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, has_status=True, dns_label_name=True),
    Resource("apps", "v1", "deployments", "Deployment", has_status=True),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
)}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    resource = RESOURCES.get(plural)
    if resource is None or resource.group != group or resource.version != version:
        return None
    return resource


class ApiError(Exception):
    """An error the API server answers with a ``Status`` object."""

    REASONS = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict", 410: "Expired",
               415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
               503: "ServiceUnavailable"}

    def __init__(self, code: int, message: str, reason: str = "", details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or self.REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(resource: Resource, name: str) -> ApiError:
    return ApiError(404, f'{resource.qualified} "{name}" not found', "NotFound",
                    {"name": name, "group": resource.group, "kind": resource.plural})


def already_exists(resource: Resource, name: str) -> ApiError:
    return ApiError(409, f'{resource.qualified} "{name}" already exists', "AlreadyExists",
                    {"name": name, "group": resource.group, "kind": resource.plural})


def conflict(resource: Resource, name: str) -> ApiError:
    return ApiError(409, f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again", "Conflict",
                    {"name": name, "group": resource.group, "kind": resource.plural})


def invalid(resource: Resource, name: str, causes: list[tuple[str, str]]) -> ApiError:
    text = "; ".join(f"{field}: {message}" for field, message in causes)
    return ApiError(422, f'{resource.kind} "{name}" is invalid: {text}', "Invalid",
                    {"name": name, "group": resource.group, "kind": resource.kind,
                     "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes]})


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def _label_problems(where: str, labels: Any) -> list[tuple[str, str]]:
    problems = []
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))) or len(name) > 63 \
                or not _LABEL_NAME.match(name):
            problems.append((f"{where}", f"Invalid value: {key!r}: a valid label key is required"))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            problems.append((f"{where}", f"Invalid value: {value!r}: a valid label value must be 63 characters "
                             "or less, alphanumeric, '-', '_' or '.', starting and ending alphanumeric"))
    return problems


def validate(resource: Resource, obj: Obj) -> None:
    """The checks of the real API server that catch a client's mistakes (422 Invalid)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    problems = []
    if resource.dns_label_name:
        if len(name) > 63 or not _DNS_LABEL.match(name):
            problems.append(("metadata.name", f"Invalid value: {name!r}: a DNS-1035 label is required"))
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        problems.append(("metadata.name", f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain is required"))
    problems += _label_problems("metadata.labels", meta.get("labels"))
    spec = obj.get("spec") or {}
    if resource.kind == "Deployment":
        selector = spec.get("selector")
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector or not from_label_selector(selector):
            problems.append(("spec.selector", "Required value"))
        elif not matches(from_label_selector(selector), template_labels):
            problems.append(("spec.template.metadata.labels",
                             "Invalid value: selector does not match template labels"))
        problems += _label_problems("spec.template.metadata.labels", template_labels)
        if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
            problems.append(("spec.template.spec.containers", "Required value"))
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            problems.append(("spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0"))
    if resource.kind == "Pod" and not spec.get("containers"):
        problems.append(("spec.containers", "Required value"))
    if problems:
        raise invalid(resource, name, problems)


def _default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in spec.get("containers") or []:
        image = container.get("image", "")
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")


def apply_defaults(resource: Resource, obj: Obj, cluster_ip: str = "") -> None:
    """Fill in the defaults the real API server adds, so clients that diff what they sent see them too."""
    spec = obj.get("spec")
    if resource.kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        template_spec = (spec.get("template") or {}).get("spec")
        if isinstance(template_spec, dict):
            _default_pod_spec(template_spec)
        obj.setdefault("status", {})
    elif resource.kind == "Pod" and isinstance(spec, dict):
        _default_pod_spec(spec)
        obj.setdefault("status", {"phase": "Pending", "qosClass": "BestEffort"})
    elif resource.kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if cluster_ip and not spec.get("clusterIP"):
            spec["clusterIP"] = cluster_ip
            spec["clusterIPs"] = [cluster_ip]
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        obj.setdefault("status", {"loadBalancer": {}})
    elif resource.kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


def immutable_change(resource: Resource, old: Obj, new: Obj) -> str:
    """A field a real API server refuses to change (422), or ''."""
    if resource.kind == "Deployment":
        if (old.get("spec") or {}).get("selector") != (new.get("spec") or {}).get("selector"):
            return "spec.selector: field is immutable"
    if resource.kind == "Pod":
        def without_images(spec: Obj) -> Obj:
            spec = copy.deepcopy(spec or {})
            for container in spec.get("containers") or []:
                container.pop("image", None)
            spec.pop("activeDeadlineSeconds", None)
            spec.pop("tolerations", None)
            return spec
        if without_images(old.get("spec")) != without_images(new.get("spec")):
            return "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`, " \
                   "`spec.activeDeadlineSeconds`, `spec.tolerations`"
    return ""
