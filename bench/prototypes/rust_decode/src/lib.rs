//! Prototype: the per-record decode of a Kafka CloudEvent (binary mode) in Rust.
//!
//! `decode(headers, value)` reads the common case only: lower-case `ce_*`
//! headers, a Seldon request / response / feedback, a JSON body with
//! `data.ndarray` rows of two or more numbers (argmax through `data.names`).
//! It returns a tuple the Python wrapper turns into an `Event`, or `None`
//! for anything else (errors included): the Python decoder then reads the
//! record, so every error message stays the Python one.
//!
//! This is a measuring prototype, not shipped code: it is a second
//! implementation of the decoder's semantics for the records it accepts.

use std::collections::HashMap;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::Value;

const REQUEST: i64 = 0;
const RESPONSE: i64 = 1;
const FEEDBACK: i64 = 2;

/// Class names seen before, by their joined text: the shared names tuple and
/// one shared one-class tuple per name (what pending puids point at).
struct Names {
    names: Py<PyTuple>,
    singles: Vec<Py<PyTuple>>,
}

static NAMES: Mutex<Option<HashMap<String, Names>>> = Mutex::new(None);
const NAMES_MAX: usize = 10_000;

#[derive(Default)]
struct Headers<'a> {
    ce_type: Option<&'a str>,
    ce_id: Option<&'a str>,
    ce_source: Option<&'a str>,
    requestid: Option<&'a str>,
    namespace: Option<&'a str>,
    deployment: Option<&'a str>,
    predictor: Option<&'a str>,
    model: Option<&'a str>,
    component: Option<&'a str>,
    content_type: Option<&'a str>,
    declared: Option<&'a str>,
}

fn kind_of(ce_type: &str) -> Option<i64> {
    match ce_type {
        "io.seldon.serving.inference.request" => Some(REQUEST),
        "io.seldon.serving.inference.response" => Some(RESPONSE),
        "io.seldon.serving.feedback" => Some(FEEDBACK),
        _ => None,
    }
}

/// The argmax of a row of numbers (first maximum), or None when the row is
/// not one the fast path reads (not all numbers, an int past 2**53).
fn argmax(row: &[Value]) -> Option<usize> {
    let mut best = 0usize;
    let mut best_value = f64::NEG_INFINITY;
    for (i, v) in row.iter().enumerate() {
        let x = match v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    if i.unsigned_abs() > (1u64 << 53) {
                        return None;
                    }
                    i as f64
                } else {
                    n.as_f64()?
                }
            }
            _ => return None,
        };
        if i == 0 || x > best_value {
            best = i;
            best_value = x;
        }
    }
    Some(best)
}

fn number<'py>(py: Python<'py>, v: &Value) -> Option<Bound<'py, PyAny>> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(PyInt::new(py, i).into_any())
            } else if n.is_u64() {
                None
            } else {
                Some(PyFloat::new(py, n.as_f64()?).into_any())
            }
        }
        _ => None,
    }
}

/// The classes (as a tuple), the shared names tuple, and the rows' argmax
/// indices of a Seldon message `{"data": {"names": [...], "ndarray": [[...]]}}`.
fn classes<'py>(
    py: Python<'py>,
    message: &Value,
    keep_rows: bool,
) -> Option<(Bound<'py, PyTuple>, Option<Bound<'py, PyTuple>>, Option<Bound<'py, PyList>>)> {
    let message = message.as_object()?;
    let data = message.get("data")?.as_object()?;
    for other in ["jsonData", "strData", "binData"] {
        if data.contains_key(other) {
            return None;
        }
    }
    let rows = data.get("ndarray")?.as_array()?;
    if rows.is_empty() {
        return None;
    }
    let mut indices = Vec::with_capacity(rows.len());
    for row in rows {
        let row = row.as_array()?;
        if row.len() < 2 {
            return None;
        }
        indices.push(argmax(row)?);
    }
    let width = rows[0].as_array()?.len();
    let values = if keep_rows {
        let list = PyList::empty(py);
        for row in rows {
            let out = PyList::empty(py);
            for v in row.as_array()? {
                out.append(number(py, v)?).ok()?;
            }
            list.append(out).ok()?;
        }
        Some(list)
    } else {
        None
    };
    match data.get("names") {
        None => {
            let items: Vec<Bound<'py, PyString>> = indices
                .iter()
                .map(|i| PyString::intern(py, &i.to_string()))
                .collect();
            Some((PyTuple::new(py, items).ok()?, None, values))
        }
        Some(names) => {
            let names = names.as_array()?;
            if names.is_empty() {
                return None;
            }
            let mut joined = String::new();
            for n in names {
                joined.push_str(n.as_str()?);
                joined.push('\x1f');
            }
            for row in rows {
                if row.as_array()?.len() != names.len() {
                    return None;
                }
            }
            let _ = width;
            let mut guard = NAMES.lock().ok()?;
            let cache = guard.get_or_insert_with(HashMap::new);
            if !cache.contains_key(&joined) {
                if cache.len() >= NAMES_MAX {
                    return None;
                }
                let strings: Vec<Bound<'py, PyString>> = names
                    .iter()
                    .map(|n| PyString::intern(py, n.as_str().unwrap_or("")))
                    .collect();
                let singles = strings
                    .iter()
                    .map(|s| PyTuple::new(py, [s.clone()]).map(|t| t.unbind()))
                    .collect::<PyResult<Vec<_>>>()
                    .ok()?;
                let tuple = PyTuple::new(py, strings).ok()?.unbind();
                cache.insert(joined.clone(), Names { names: tuple, singles });
            }
            let entry = cache.get(&joined)?;
            let shared = entry.names.bind(py).clone();
            let classes = if indices.len() == 1 {
                entry.singles[indices[0]].bind(py).clone()
            } else {
                let items: Vec<Bound<'py, PyAny>> = indices
                    .iter()
                    .map(|&i| shared.get_item(i))
                    .collect::<PyResult<Vec<_>>>()
                    .ok()?;
                PyTuple::new(py, items).ok()?
            };
            Some((classes, Some(shared), values))
        }
    }
}

/// The reward of a feedback: a number or a boolean (strings go to Python).
fn reward(v: Option<&Value>) -> Option<Option<f64>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::Bool(b)) => Some(Some(if *b { 1.0 } else { 0.0 })),
        Some(Value::Number(n)) => {
            let x = n.as_f64()?;
            if x.is_finite() {
                Some(Some(x))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Whether a truth message holds rows (`{}` and `{"meta": ...}` do not: no truth).
fn has_rows(message: &serde_json::Map<String, Value>) -> bool {
    if let Some(Value::Object(data)) = message.get("data") {
        if data.keys().any(|k| k != "names" && k != "meta") {
            return true;
        }
    }
    ["predictions", "outputs", "instances", "strData", "jsonData", "binData"]
        .iter()
        .any(|k| message.contains_key(*k))
}

/// `(kind, puid, ce_type, ce_source, ce_id, namespace, deployment, predictor,
/// model, classes, names, rows, reward)`, or `None` for the Python decoder.
#[pyfunction]
fn decode<'py>(
    py: Python<'py>,
    headers: &Bound<'py, PyAny>,
    value: &Bound<'py, PyBytes>,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let mut h = Headers::default();
    let mut pairs: Vec<(Bound<'py, PyString>, Bound<'py, PyBytes>)> = Vec::with_capacity(16);
    for item in headers.try_iter()? {
        let item = item?;
        let Ok(pair) = item.downcast::<PyTuple>() else { return Ok(None) };
        if pair.len() != 2 {
            return Ok(None);
        }
        let Ok(name) = pair.get_item(0)?.downcast_into::<PyString>() else { return Ok(None) };
        let Ok(raw) = pair.get_item(1)?.downcast_into::<PyBytes>() else { return Ok(None) };
        pairs.push((name, raw));
    }
    for (name, raw) in &pairs {
        let name = name.to_str()?;
        if name.bytes().any(|c| c.is_ascii_uppercase()) {
            return Ok(None);
        }
        let Ok(text) = std::str::from_utf8(raw.as_bytes()) else { return Ok(None) };
        match name {
            "ce_type" => h.ce_type = Some(text),
            "ce_id" => h.ce_id = Some(text),
            "ce_source" => h.ce_source = Some(text),
            "ce_requestid" => h.requestid = Some(text),
            "ce_namespace" => h.namespace = Some(text),
            "ce_inferenceservicename" => h.deployment = Some(text),
            "ce_endpoint" => h.predictor = Some(text),
            "ce_modelid" => h.model = Some(text),
            "ce_component" => h.component = Some(text),
            "content-type" => h.content_type = Some(text),
            "ce_datacontenttype" => h.declared = Some(text),
            _ => {}
        }
    }
    let Some(ce_type) = h.ce_type else { return Ok(None) };
    let Some(kind) = kind_of(ce_type) else { return Ok(None) };
    if h.declared.is_some() || !matches!(h.content_type, None | Some("application/json")) {
        return Ok(None);
    }
    let (Some(puid), Some(ce_id)) = (h.requestid, h.ce_id) else { return Ok(None) };
    if puid.is_empty() || ce_id.is_empty() {
        return Ok(None);
    }
    let model = match h.model {
        Some(m) if !m.is_empty() => m,
        _ if kind != FEEDBACK => h.component.unwrap_or(""),
        _ => "",
    };
    let source: Bound<'py, PyAny> = match h.ce_source {
        Some(s) if !s.is_empty() => PyString::new(py, s).into_any(),
        _ => py.None().into_bound(py),
    };
    let none = || py.None().into_bound(py);
    let (classes, names, rows, reward_value) = if kind == REQUEST {
        (none(), none(), none(), none())
    } else {
        let raw = value.as_bytes();
        if raw.is_empty() || raw.starts_with(b"\x1f\x8b") {
            return Ok(None);
        }
        let Ok(payload) = serde_json::from_slice::<Value>(raw) else { return Ok(None) };
        let Some(object) = payload.as_object() else { return Ok(None) };
        if kind == RESPONSE {
            let Some((classes, names, rows)) = classes(py, &payload, true) else {
                return Ok(None);
            };
            let names = names.map(|n| n.into_any()).unwrap_or_else(none);
            (classes.into_any(), names, rows.map(|r| r.into_any()).unwrap_or_else(none), none())
        } else {
            if object.contains_key("response") {
                return Ok(None);
            }
            let Some(reward) = reward(object.get("reward")) else { return Ok(None) };
            let reward_value = match reward {
                Some(x) => PyFloat::new(py, x).into_any(),
                None => none(),
            };
            match object.get("truth") {
                None | Some(Value::Null) => (none(), none(), none(), reward_value),
                Some(Value::Object(truth)) if !has_rows(truth) => {
                    (none(), none(), none(), reward_value)
                }
                Some(truth) => {
                    let Some((classes, names, _)) = classes(py, truth, false) else {
                        return Ok(None);
                    };
                    let names = names.map(|n| n.into_any()).unwrap_or_else(none);
                    (classes.into_any(), names, none(), reward_value)
                }
            }
        }
    };
    let out = PyTuple::new(
        py,
        [
            PyInt::new(py, kind).into_any(),
            PyString::new(py, puid).into_any(),
            PyString::intern(py, ce_type).into_any(),
            source,
            PyString::new(py, ce_id).into_any(),
            PyString::new(py, h.namespace.unwrap_or("")).into_any(),
            PyString::new(py, h.deployment.unwrap_or("")).into_any(),
            PyString::new(py, h.predictor.unwrap_or("")).into_any(),
            PyString::new(py, model).into_any(),
            classes,
            names,
            rows,
            reward_value,
        ],
    )?;
    Ok(Some(out))
}

#[pymodule]
fn feedback_stream_rust_decode(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    Ok(())
}
