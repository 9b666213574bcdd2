//! Reading MLflow trace spans: v3 servers return OTLP-shaped spans whose attributes are
//! `AnyValue`s; older servers return JSON-encoded strings. Pure functions over the decoded JSON,
//! so any shape a server sends yields a value or `None`, never a panic.

use serde_json::Value;

/// The root span of a trace (the one with no parent), if the trace still has it.
pub fn root_span(spans: &[Value]) -> Option<&Value> {
    spans.iter().find(|s| {
        s.get("parent_span_id")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    })
}

/// A span attribute as JSON: MLflow's v3 API returns OTLP `AnyValue`s; older servers return
/// JSON-encoded strings.
pub fn span_attribute(span: &Value, key: &str) -> Option<Value> {
    match span.get("attributes")? {
        Value::Array(attrs) => attrs
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| any_value(&a["value"])),
        Value::Object(map) => map.get(key).map(|v| match v {
            Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
            other => other.clone(),
        }),
        _ => None,
    }
}

/// OTLP `AnyValue` JSON → plain JSON.
pub fn any_value(v: &Value) -> Value {
    if let Some(s) = v.get("string_value") {
        return s.clone();
    }
    if let Some(b) = v.get("bool_value") {
        return b.clone();
    }
    if let Some(i) = v.get("int_value") {
        return match i {
            Value::String(s) => s
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| i.clone()),
            other => other.clone(),
        };
    }
    if let Some(d) = v.get("double_value") {
        return d.clone();
    }
    if let Some(arr) = v.get("array_value") {
        return Value::Array(
            arr["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(any_value)
                .collect(),
        );
    }
    if let Some(kv) = v.get("kvlist_value") {
        return Value::Object(
            kv["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e["key"].as_str().unwrap_or_default().to_string(),
                        any_value(&e["value"]),
                    )
                })
                .collect(),
        );
    }
    Value::Null
}

/// A span's duration in ms from its OTLP start/end nanoseconds (numbers or decimal strings).
pub fn span_latency_ms(span: &Value) -> Option<f64> {
    let num = |k: &str| {
        span.get(k).and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
    };
    let (start, end) = (num("start_time_unix_nano")?, num("end_time_unix_nano")?);
    Some(end.saturating_sub(start) as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn otlp_any_values_decode_to_plain_json() {
        let span = json!({"attributes": [
            {"key": "mlflow.spanInputs", "value": {"kvlist_value": {"values": [
                {"key": "features", "value": {"array_value": {"values": [{"double_value": 0.1}, {"int_value": "7"}, {"string_value": "x"}, {"bool_value": true}]}}}
            ]}}},
        ], "start_time_unix_nano": 1_000_000, "end_time_unix_nano": 3_500_000});
        assert_eq!(
            span_attribute(&span, "mlflow.spanInputs"),
            Some(json!({"features": [0.1, 7, "x", true]}))
        );
        assert_eq!(span_attribute(&span, "missing"), None);
        assert_eq!(span_latency_ms(&span), Some(2.5));
        let legacy = json!({"attributes": {"mlflow.spanOutputs": "[1]"}});
        assert_eq!(
            span_attribute(&legacy, "mlflow.spanOutputs"),
            Some(json!([1]))
        );
    }

    #[test]
    fn the_root_span_is_the_one_without_a_parent() {
        let spans = [
            json!({"span_id": "b", "parent_span_id": "a"}),
            json!({"span_id": "a", "parent_span_id": ""}),
        ];
        assert_eq!(root_span(&spans).unwrap()["span_id"], "a");
        assert!(root_span(&spans[..1]).is_none());
    }
}
