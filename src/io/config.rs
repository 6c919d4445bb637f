//! `config.json` files of diffusers and transformers components (and `scheduler_config.json`),
//! read one way for every model: the file is a JSON object (`read_config`); a config struct
//! starts from its library's defaults and takes each key it knows with `config_fields!`, where a
//! value of the wrong type is an error naming the key and the value; keys nobody reads are named
//! in one warning on stderr (`warn_unknown`; keys starting with `_` are bookkeeping, such as
//! `_class_name` and `_diffusers_version`); then the model's `validate` rejects what it does not
//! implement, and `parse_config` turns either message into an error naming the file.

use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::path::Path;

/// Reads `path` as a JSON object of `what` settings ("model", "scheduler").
pub fn read_config(path: &Path, what: &str) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    match json {
        Value::Object(map) => Ok(map),
        _ => Err(Error::format(path, format!("expected a JSON object of {what} settings"))),
    }
}

/// Errors unless `_class_name`, when present, is `class`.
pub fn check_class(map: &Map<String, Value>, class: &str) -> std::result::Result<(), String> {
    match map.get("_class_name").and_then(Value::as_str) {
        Some(name) if name != class => Err(format!("`_class_name` is {name:?}; this loader reads {class} configs")),
        _ => Ok(()),
    }
}

/// A config given as JSON (e.g. a single-file checkpoint's inferred config) as an object of
/// `what` settings; `source` names it in the error.
pub fn config_object<'a>(source: &Path, value: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    value.as_object().ok_or_else(|| Error::format(source, format!("expected a JSON object of {what} settings")))
}

/// `parse` then `validate` a config's JSON object; either's message becomes an error naming
/// `source`.
pub fn parse_config<C>(
    source: &Path,
    map: &Map<String, Value>,
    parse: fn(&Path, &Map<String, Value>) -> std::result::Result<C, String>,
    validate: fn(&C) -> std::result::Result<(), String>,
) -> Result<C> {
    let cfg = parse(source, map).map_err(|m| Error::format(source, m))?;
    validate(&cfg).map_err(|m| Error::format(source, m))?;
    Ok(cfg)
}

/// Parses `map[name]` into `slot` when present; a bad value is an error naming the key.
pub fn field<T: DeserializeOwned>(map: &Map<String, Value>, name: &str, slot: &mut T) -> std::result::Result<(), String> {
    if let Some(v) = map.get(name) {
        *slot = serde_json::from_value(v.clone()).map_err(|e| format!("`{name}` = {v}: {e}"))?;
    }
    Ok(())
}

/// Reads each listed key of a JSON object into the config field of the same name (`field`,
/// returning early with its error), and evaluates to the list of the keys, for `warn_unknown`:
/// `let known = config_fields!(map, cfg; in_channels, out_channels);`.
#[macro_export]
macro_rules! config_fields {
    ($map:expr, $cfg:expr; $($name:ident),* $(,)?) => {{
        $( $crate::io::config::field($map, stringify!($name), &mut $cfg.$name)?; )*
        vec![$(stringify!($name)),*]
    }};
}

/// Errors unless an optional field is absent or null.
pub fn must_be_null(name: &str, v: &Option<Value>, why: &str) -> std::result::Result<(), String> {
    match v {
        Some(v) if !v.is_null() => Err(format!("`{name}` = {v} is not supported ({why})")),
        _ => Ok(()),
    }
}

/// The keys of `map` that are neither in `known` nor bookkeeping (`_`-prefixed), in map order.
pub fn unknown_keys(map: &Map<String, Value>, known: &[&str]) -> Vec<String> {
    map.keys().filter(|k| !k.starts_with('_') && !known.contains(&k.as_str())).cloned().collect()
}

/// Warns on stderr about keys that are neither read nor known to be irrelevant.
pub fn warn_unknown(source: &Path, map: &Map<String, Value>, known: &[&str]) {
    let unknown = unknown_keys(map, known);
    if !unknown.is_empty() {
        eprintln!("warning: {}: unknown config key(s) ignored: {}", source.display(), unknown.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Cfg {
        width: usize,
        act: String,
    }

    fn parse(map: &Map<String, Value>) -> std::result::Result<(Cfg, Vec<&'static str>), String> {
        let mut c = Cfg::default();
        let known = config_fields!(map, c; width, act);
        Ok((c, known))
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let map: Map<String, Value> = serde_json::from_str(r#"{"width": 8, "act": "silu", "_class_name": "X", "extra": 1}"#).unwrap();
        let (c, known) = parse(&map).unwrap();
        assert_eq!((c.width, c.act.as_str()), (8, "silu"));
        assert_eq!(unknown_keys(&map, &known), vec!["extra".to_string()]);
        let bad: Map<String, Value> = serde_json::from_str(r#"{"width": "wide"}"#).unwrap();
        let err = parse(&bad).map(|_| ()).unwrap_err();
        assert!(err.starts_with("`width` = \"wide\": "), "{err}");
        assert!(check_class(&map, "Y").unwrap_err().contains("\"X\""));
    }
}
