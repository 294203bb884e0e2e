"""Seldon's request logger, as far as the documents it writes: a test double.

A port of ``components/seldon-request-logger/app`` (``default_logger.py``
``process_and_update_elastic_doc``, ``extract_data_part``,
``bulk_upsert_doc_to_elastic``; ``log_helper.py`` ``build_index_name``,
``set_metadata``, ``clean_header``), Seldon Core 1.13, without the Flask app
and the model-metadata lookup. It turns CloudEvents (HTTP binary headers and
a JSON body) into the upserts the logger sends, and writes them to a real
Elasticsearch with ``update`` + ``doc_as_upsert``, so the merge of request,
response and feedback into one document is Elasticsearch's own.

``messages_from_records`` turns the generator's replay records into the HTTP
CloudEvents the logger would have received from the executor.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from elasticsearch import AsyncElasticsearch

from feedback_stream.encode import ReplayRecord, rfc3339
from feedback_stream.es import SearchClient, as_search_client

Message = tuple[dict[str, str], Any]
Upsert = tuple[str, str, dict[str, Any]]

_TYPES = {
    "io.seldon.serving.inference.request": "request",
    "org.kubeflow.serving.inference.request": "request",
    "io.seldon.serving.inference.response": "response",
    "org.kubeflow.serving.inference.response": "response",
    "io.seldon.serving.feedback": "feedback",
    "org.kubeflow.serving.feedback": "feedback",
}


def _clean(value: str | None) -> str | None:
    if not value:
        return value
    return value.translate({ord(c): None for c in '!@#$"<>/?'})


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _serving_engine(headers: Mapping[str, str]) -> str:
    ce_type = _clean(_header(headers, "Ce-Type")) or ""
    if ce_type.startswith(("io.seldon.serving", "seldon")):
        return "seldon"
    return "inferenceservice"


def build_index_name(headers: Mapping[str, str], environment: str | None = None) -> str:
    """``log_helper.build_index_name`` with ``prefix="inference"``, ``suffix=True``."""
    engine = _serving_engine(headers)
    name = f"inference-log-{environment}-{engine}" if environment else f"inference-log-{engine}"
    namespace = _clean(_header(headers, "Ce-Namespace"))
    name += f"-{namespace}" if namespace else "-unknown-namespace"
    isvc = _clean(_header(headers, "Ce-Inferenceservicename")) or _clean(
        _header(headers, "Ce-Modelid")
    )
    name += f"-{isvc}" if isvc else "-unknown-inferenceservice"
    endpoint = _clean(_header(headers, "Ce-Endpoint"))
    name += f"-{endpoint}" if endpoint else "-unknown-endpoint"
    return name


def _shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def _reshape(flat: list[Any], shape: list[int]) -> Any:
    if len(shape) <= 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [_reshape(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _datatype(instance: Any) -> str:
    """``set_datatype_from_numpy`` on the array the logger built."""
    shape = _shape(instance)
    first = instance
    while isinstance(first, list):
        first = first[0] if first else None
    kind = "number" if isinstance(first, int | float) else "text"
    if len(shape) > 1 and shape[1] > 1:
        kind = "tabular"
    if len(shape) > 2:
        kind = "tabular"
    if len(shape) > 3:
        kind = "image"
    return kind


def _elements(instance: Any, names: list[str] | None) -> Any:
    """``createElementsNoMetadata``: one {name: value} per row, when names are known."""
    if not names or not isinstance(instance, list):
        return None
    rows = []
    for row in instance:
        if isinstance(row, list):
            rows.append({name: row[i] for i, name in enumerate(names) if i < len(row)})
        else:
            rows.append(dict.fromkeys(names, row))
    return rows


def extract_data_part(content: dict[str, Any]) -> dict[str, Any]:
    """``extract_data_part`` without the metadata service: what a request/response stores."""
    part = dict(content)
    if "model_name" in part and "outputs" in part:
        output = part["outputs"][0]
        part["instance"] = _reshape(output["data"], output["shape"])
        part["dataType"] = _datatype(part["instance"])
        for name in ("outputs", "model_name", "model_version"):
            part.pop(name, None)
    elif "inputs" in part:
        tensor = part["inputs"][0]
        part["instance"] = _reshape(tensor["data"], tensor["shape"])
        part["dataType"] = _datatype(part["instance"])
        del part["inputs"]
    elif "instances" in part:
        part["instance"] = part.pop("instances")
        part["dataType"] = _datatype(part["instance"])
    elif "predictions" in part:
        part["instance"] = part.pop("predictions")
        part["dataType"] = _datatype(part["instance"])
    else:
        data = content.get("data", {})
        names = data.get("names") if isinstance(data, dict) else None
        if "strData" in content:
            part["dataType"] = "text"
            part["instance"] = content["strData"]
        elif "jsonData" in content:
            part["dataType"] = "json"
            part["instance"] = content["jsonData"]
        elif isinstance(data, dict) and "tensor" in data:
            part["instance"] = _reshape(data["tensor"]["values"], data["tensor"]["shape"])
        elif isinstance(data, dict) and "ndarray" in data:
            part["instance"] = copy.deepcopy(data["ndarray"])
        if isinstance(part.get("instance"), list):
            part["instance"] = _floats(part["instance"])
            part["dataType"] = _datatype(part["instance"])
            elements = _elements(part["instance"], names)
            if elements is not None:
                part["elements"] = elements
        if names:
            part["names"] = names
        for name in ("data", "strData", "jsonData", "binData"):
            part.pop(name, None)
    part["payload"] = content
    return part


def _floats(value: Any) -> Any:
    """Seldon's ``extract_request_parts`` reads ndarray numbers into a float array."""
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int):
        return float(value)
    return value


def upserts(headers: Mapping[str, str], body: Any, now: datetime | None = None) -> list[Upsert]:
    """(index, id, partial document) of every upsert the logger makes for one CloudEvent."""
    request_id = _header(headers, "Ce-Requestid") or _header(headers, "Ce-Id")
    ce_type = _header(headers, "Ce-Type")
    if not request_id or not ce_type:
        raise ValueError("the request logger answers 400 to events without an id or a type")
    message_type = _TYPES.get(ce_type, "unknown")
    index = build_index_name(headers)
    part = extract_data_part(body) if message_type in ("request", "response") else dict(body)
    for name in ("ce-time", "ce-source"):
        value = _header(headers, name)
        if value:
            part[name] = _clean(value)
    doc: dict[str, Any] = {message_type: part}
    doc["ServingEngine"] = _serving_engine(headers)
    for name in ("Ce-Inferenceservicename", "Ce-Endpoint", "Ce-Namespace", "Ce-Modelid"):
        value = _header(headers, name)
        if value:
            doc[name] = _clean(value)
    if not doc.get("Ce-Inferenceservicename"):
        doc["Ce-Inferenceservicename"] = _clean(_header(headers, "Ce-Modelid"))
    stamp = _header(headers, "CE-Time")
    doc["@timestamp"] = stamp or (now or datetime.now(UTC)).isoformat()
    doc["RequestId"] = request_id

    instance = part.get("instance")
    if instance is not None:
        if isinstance(instance, list) and part.get("dataType") != "json":
            n = len(instance)
            elements = part.get("elements")
            out = []
            for i, item in enumerate(instance):
                item_doc = dict(doc)
                item_part = dict(part)
                item_part["instance"] = item
                if isinstance(elements, list) and len(elements) > i:
                    item_part["elements"] = elements[i]
                item_doc[message_type] = item_part
                item_id = f"{request_id}-item-{i}" if n > 1 else request_id
                out.append((index, item_id, item_doc))
            return out
        if isinstance(part.get("elements"), list):
            part["elements"] = part["elements"][0]
        return [(index, request_id, doc)]
    if message_type == "feedback":
        return [(index, request_id, doc)]
    return []


def messages_from_records(records: Iterable[ReplayRecord]) -> Iterator[Message]:
    """The HTTP binary CloudEvents the executor would have POSTed for these records.

    Kafka ``ce_*`` headers become ``Ce-*`` headers; a structured value is
    unpacked; Seldon's direct-logging headers get their ``Ce-`` prefix back.
    ``Ce-Time`` is the CloudEvent time, else the record timestamp. A boolean
    reward becomes 0/1: Elasticsearch maps ``feedback.reward`` from the first
    document of an index and refuses the other form afterwards, so a real
    deployment logs one form (the generator mixes them on purpose).
    """
    for record in records:
        headers = {k.lower(): v for k, v in record["headers"].items()}
        value = record["value"]
        attrs: dict[str, str] = {}
        if headers.get("content-type", "").startswith("application/cloudevents"):
            envelope = dict(value)
            value = envelope.pop("data")
            attrs = {k: str(v) for k, v in envelope.items() if not isinstance(v, dict | list)}
        elif any(name.startswith("ce_") for name in headers):
            attrs = {name[3:]: text for name, text in headers.items() if name.startswith("ce_")}
        else:
            attrs = {name: text for name, text in headers.items() if name != "content-type"}
        attrs.setdefault("time", rfc3339(record["timestamp"]))
        if isinstance(value, dict) and isinstance(value.get("reward"), bool):
            value = {**value, "reward": int(value["reward"])}
        out = {f"Ce-{name.capitalize()}": text for name, text in attrs.items()}
        out["Content-Type"] = "application/json"
        yield out, value


async def log_messages(
    es: AsyncElasticsearch | SearchClient, messages: Iterable[Message], chunk: int = 400
) -> int:
    """Write what the logger writes for ``messages`` (bulk upserts, in order); refresh.

    Returns the number of upserts. Items of one bulk that hit one document
    are applied in order, as the logger's one-at-a-time updates would be.
    Bulks stay under 1 MB, which aiohttp sends without a warning.
    """
    client = as_search_client(es)
    operations: list[dict[str, Any]] = []
    count = 0
    for headers, body in messages:
        for index, doc_id, doc in upserts(headers, body):
            operations.append({"update": {"_index": index, "_id": doc_id}})
            operations.append({"doc": doc, "doc_as_upsert": True})
            count += 1
            if len(operations) >= 2 * chunk:
                await _bulk(client, operations)
                operations = []
    if operations:
        await _bulk(client, operations)
    await client.refresh("inference-log-*")
    return count


async def _bulk(client: SearchClient, operations: list[dict[str, Any]]) -> None:
    body = await client.bulk(operations, filter_path="errors,items.*.error")
    if body.get("errors"):
        errors = [next(iter(i.values())).get("error") for i in body["items"]]
        raise AssertionError(f"request logger upserts failed: {[e for e in errors if e][:3]}")
