"""XML against a botocore shape, both ways: shared by rest-xml (S3) and the Query protocol's responses.

Reading uses expat directly with DOCTYPE and entity declarations refused (what defusedxml does, in a few lines and
without a dependency): no billion laughs, no external entities. Tags are compared by local name, as botocore's
parser does, so a namespace on the root is accepted but not required.

Writing builds the text by hand (ElementTree's tree costs more than the document): lists are wrapped in
``<member>`` (or the member's locationName) unless ``flattened``; maps are ``<entry><key/><value/></entry>``
unless flattened; booleans are ``true``/``false``; timestamps ISO 8601 unless the trait says otherwise; blobs base64.
"""

from __future__ import annotations

import xml.parsers.expat
from typing import Any
from xml.etree.ElementTree import Element, TreeBuilder

from botocore.model import Shape  # type: ignore[import-untyped]

from kambda.aws.protocol import values
from kambda.aws.protocol.faults import Malformed

LOCATED = frozenset(("uri", "querystring", "header", "headers", "statusCode"))


# -- reading ------------------------------------------------------------------------------------------------------

def _refuse(*_: Any) -> None:
    raise Malformed("XML with a DOCTYPE or entity declarations is not accepted")


def parse(body: bytes) -> Element:
    """The document's root element, tags reduced to their local names; Malformed for bad or unsafe XML."""
    builder = TreeBuilder()
    parser = xml.parsers.expat.ParserCreate(namespace_separator="}")
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse  # type: ignore[assignment]
    parser.buffer_text = True

    def start(tag: str, attrs: dict[str, str]) -> None:
        builder.start(tag.rpartition("}")[2], {k.rpartition("}")[2]: v for k, v in attrs.items()})

    def end(tag: str) -> None:
        builder.end(tag.rpartition("}")[2])

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(body, True)
        return builder.close()
    except xml.parsers.expat.ExpatError as exc:
        raise Malformed(f"invalid XML: {exc}") from None
    except AssertionError:
        raise Malformed("invalid XML: no root element") from None


def _text(node: Element) -> str:
    return node.text or ""


def member_tag(name: str, member: Shape) -> str:
    """botocore's rule: a flattened list is named by its member's locationName when it has one."""
    if member.type_name == "list" and member.serialization.get("flattened"):
        inner = member.member.serialization.get("name")
        if inner:
            return str(inner)
    return str(member.serialization.get("name", name))


def decode(shape: Shape, node: Element | list[Element]) -> Any:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(node, Element)
        return _decode_structure(shape, node)
    if kind == "list":
        return _decode_list(shape, node)
    if kind == "map":
        return _decode_map(shape, node)
    assert isinstance(node, Element)
    return values.scalar_from_text(kind, _text(node).strip() if kind != "string" else _text(node))


def _decode_structure(shape: Shape, node: Element) -> dict[str, Any]:
    children: dict[str, list[Element]] = {}
    for child in node:
        children.setdefault(child.tag, []).append(child)
    out: dict[str, Any] = {}
    for name, member in shape.members.items():
        if member.serialization.get("location") in LOCATED:
            continue
        if member.serialization.get("xmlAttribute"):
            attr = str(member.serialization.get("name", name)).rpartition(":")[2]
            if attr in node.attrib:
                out[name] = node.attrib[attr]
            continue
        found = children.get(member_tag(name, member))
        if not found:
            continue
        if member.type_name in ("list", "map") and member.serialization.get("flattened"):
            out[name] = decode(member, found)
        else:
            out[name] = decode(member, found[0])
    return out


def _decode_list(shape: Shape, node: Element | list[Element]) -> list[Any]:
    member = shape.member
    items = node if isinstance(node, list) else list(node)
    return [decode(member, item) for item in items]


def _decode_map(shape: Shape, node: Element | list[Element]) -> dict[str, Any]:
    key_shape, value_shape = shape.key, shape.value
    key_tag = key_shape.serialization.get("name") or "key"
    value_tag = value_shape.serialization.get("name") or "value"
    entries = node if isinstance(node, list) else list(node)
    out: dict[str, Any] = {}
    for entry in entries:
        key_node, value_node = entry.find(key_tag), entry.find(value_tag)
        if key_node is None:
            raise Malformed(f"{shape.name}: an entry has no <{key_tag}>")
        out[_text(key_node)] = None if value_node is None else decode(value_shape, value_node)
    return out


# -- writing ------------------------------------------------------------------------------------------------------

def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def escape_attr(text: str) -> str:
    return escape(text).replace('"', "&quot;")


def namespace_attr(shape: Shape) -> str:
    ns = shape.serialization.get("xmlNamespace")
    if ns is None:
        return ""
    if isinstance(ns, str):
        return f' xmlns="{escape_attr(ns)}"'
    prefix = ns.get("prefix")
    return f' xmlns{":" + prefix if prefix else ""}="{escape_attr(ns["uri"])}"'


def element(out: list[str], tag: str, shape: Shape, value: Any, attrs: str = "") -> None:
    """Append ``<tag attrs>value</tag>`` (or a flattened list/map's repeated elements) to ``out``."""
    kind = shape.type_name
    if kind == "structure":
        out.append(f"<{tag}{attrs}{_struct_attrs(shape, value)}>")
        members(out, shape, value)
        out.append(f"</{tag}>")
    elif kind == "list":
        member = shape.member
        if shape.serialization.get("flattened"):
            for item in value:
                element(out, tag, member, item)
            return
        inner = member.serialization.get("name", "member")
        out.append(f"<{tag}{attrs}>")
        for item in value:
            element(out, inner, member, item)
        out.append(f"</{tag}>")
    elif kind == "map":
        key_shape, value_shape = shape.key, shape.value
        key_tag = key_shape.serialization.get("name") or "key"
        value_tag = value_shape.serialization.get("name") or "value"
        flat = shape.serialization.get("flattened")
        if not flat:
            out.append(f"<{tag}{attrs}>")
        for key, item in value.items():
            out.append(f"<{tag}>" if flat else "<entry>")
            element(out, key_tag, key_shape, key)
            if item is not None:
                element(out, value_tag, value_shape, item)
            out.append(f"</{tag}>" if flat else "</entry>")
        if not flat:
            out.append(f"</{tag}>")
    else:
        text = values.scalar_to_text(kind, value, shape.serialization.get("timestampFormat", values.ISO8601))
        out.append(f"<{tag}{attrs}>{escape(text)}</{tag}>")


def _struct_attrs(shape: Shape, value: dict[str, Any]) -> str:
    parts = []
    for name, member in shape.members.items():
        if member.serialization.get("xmlAttribute") and value.get(name) is not None:
            qname = member.serialization.get("name", name)
            if qname.startswith("xsi:"):
                parts.append(' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"')
            parts.append(f' {qname}="{escape_attr(str(value[name]))}"')
    return "".join(parts)


def members(out: list[str], shape: Shape, value: dict[str, Any]) -> None:
    """The children of a structure: every body member that is set, in model order."""
    for name, member in shape.members.items():
        item = value.get(name)
        if item is None or member.serialization.get("location") in LOCATED:
            continue
        if member.serialization.get("xmlAttribute"):
            continue
        element(out, member_tag(name, member), member, item)
