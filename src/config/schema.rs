//! The machinery behind the key table in `mod.rs`.
//!
//! [`settings!`] turns one declaration per key into everything that used to
//! be written out three times: the typed struct, the file struct serde
//! parses (every key optional), the resolution of each key from the merged
//! layers (with its [`Source`] recorded), the listing of every key, and the
//! flattening of a parsed file into `(dotted key, Raw)` pairs.
//!
//! Besides the macro: [`Raw`] (a value before validation, from any layer),
//! [`Resolver`] (the highest layer that sets a key, else its default) and
//! [`Table`] (what the macro implements for each generated struct).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::render::Render;
use super::{Config, ConfigError, REDACTED, Source, is_secret};

/// Declares configuration tables. Each table is a struct; each field is one
/// of:
///
/// - a key: `name: Type = key { default: "text", file: FileType, parse: parser }`.
///   `default` is text parsed by the same `parser` as any other value (so
///   defaults are validated too), or a `{ block }` computing the default from
///   keys declared before it. `FileType` is what the TOML file may hold
///   (serde checks it, with the line number in the error); `parser` is a
///   `Fn(&Raw) -> Result<Type, String>` whose error says what was expected.
///   Preceded by `#[key = "name"]` when the key is not the field's name.
/// - a nested table: `name: OtherTable` (declared in the same invocation),
///   keys `name.*`, `[name]` in the file.
/// - a file-only list: `name: Type = list { file: FileType }`, e.g.
///   `[[external_auth]]`: not a dotted key (no environment variable or flag
///   sets it), parsed by serde and filled in by the loader.
///
/// Doc comments on fields are kept on the typed struct. The file struct is
/// named after `in`; serde's type errors mention it ("expected struct RawLog").
macro_rules! settings {
    ($(
        $(#[$smeta:meta])*
        pub struct $name:ident in $raw:ident {
            $(
                $(#[doc = $doc:literal])*
                $(#[key = $key:literal])?
                $field:ident : $ty:ty $(= $kind:ident { $($arg:tt)* })?
            ),* $(,)?
        }
    )*) => {$(
        $(#[$smeta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        #[doc = concat!("[`", stringify!($name), "`] as written in the config file: every key optional, unknown keys rejected.")]
        #[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $raw {
            $(
                #[serde(default $(, rename = $key)?)]
                $field: settings!(@file $ty $(; $kind { $($arg)* })?),
            )*
        }

        impl $crate::config::schema::Table for $name {
            type File = $raw;

            fn resolve(
                r: &mut $crate::config::schema::Resolver<'_>,
                prefix: &str,
            ) -> Result<Self, ConfigError> {
                $(
                    let key = format!("{prefix}{}", settings!(@key $field $($key)?));
                    let $field: $ty = settings!(@resolve r, key, $ty $(; $kind { $($arg)* })?);
                )*
                Ok(Self { $($field),* })
            }

            fn keys(prefix: &str, out: &mut Vec<$crate::config::schema::Key>) {
                $(
                    let key = format!("{prefix}{}", settings!(@key $field $($key)?));
                    settings!(@keys out, key, $ty $(; $kind { $($arg)* })?);
                )*
            }

            fn flatten(
                file: &$raw,
                prefix: &str,
                out: &mut Vec<(String, $crate::config::schema::Raw)>,
            ) {
                $(
                    let key = format!("{prefix}{}", settings!(@key $field $($key)?));
                    settings!(@flatten out, key, &file.$field, $ty $(; $kind { $($arg)* })?);
                )*
            }
        }
    )*};

    // The key's last segment.
    (@key $field:ident) => { stringify!($field) };
    (@key $field:ident $key:literal) => { $key };

    // The field's type in the file struct.
    (@file $ty:ty) => { <$ty as $crate::config::schema::Table>::File };
    (@file $ty:ty; key { default: $d:tt, file: $file:ty, parse: $p:expr $(,)? }) => { Option<$file> };
    (@file $ty:ty; list { file: $file:ty $(,)? }) => { $file };

    // The typed value.
    (@resolve $r:ident, $key:ident, $ty:ty) => {
        <$ty as $crate::config::schema::Table>::resolve($r, &format!("{}.", $key))?
    };
    (@resolve $r:ident, $key:ident, $ty:ty; key { default: $d:literal, file: $file:ty, parse: $p:expr $(,)? }) => {
        $r.get(&$key, $d, $p)?
    };
    (@resolve $r:ident, $key:ident, $ty:ty; key { default: $d:block, file: $file:ty, parse: $p:expr $(,)? }) => {
        $r.get_or(&$key, $p, || $d)?
    };
    (@resolve $r:ident, $key:ident, $ty:ty; list { $($arg:tt)* }) => {{
        let _ = $key;
        Default::default()
    }};

    // The key listing.
    (@keys $out:ident, $key:ident, $ty:ty) => {
        <$ty as $crate::config::schema::Table>::keys(&format!("{}.", $key), $out)
    };
    (@keys $out:ident, $key:ident, $ty:ty; key { $($arg:tt)* }) => {
        $out.push($crate::config::schema::Key {
            name: $key,
            layered: true,
            secret: <$ty as $crate::config::render::Render>::SECRET,
        })
    };
    (@keys $out:ident, $key:ident, $ty:ty; list { $($arg:tt)* }) => {
        $out.push($crate::config::schema::Key { name: $key, layered: false, secret: false })
    };

    // The keys a parsed file sets.
    (@flatten $out:ident, $key:ident, $value:expr, $ty:ty) => {
        <$ty as $crate::config::schema::Table>::flatten($value, &format!("{}.", $key), $out)
    };
    (@flatten $out:ident, $key:ident, $value:expr, $ty:ty; key { $($arg:tt)* }) => {
        if let Some(value) = $value {
            $out.push(($key, $crate::config::schema::FileValue::to_raw(value)));
        }
    };
    (@flatten $out:ident, $key:ident, $value:expr, $ty:ty; list { $($arg:tt)* }) => {{
        let _ = ($key, $value);
    }};
}
pub(super) use settings;

/// What [`settings!`] implements for each table.
pub(super) trait Table: Sized {
    /// The table as written in the config file.
    type File: Default;

    /// Resolves every key of the table; `prefix` is `""` or e.g. `"identity.aws."`.
    fn resolve(r: &mut Resolver<'_>, prefix: &str) -> Result<Self, ConfigError>;

    /// Appends every key of the table, in declaration order.
    fn keys(prefix: &str, out: &mut Vec<Key>);

    /// Appends the keys `file` sets, with their values.
    fn flatten(file: &Self::File, prefix: &str, out: &mut Vec<(String, Raw)>);
}

/// One entry of the key listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Key {
    /// Dotted name, e.g. `log.filter`.
    pub(super) name: String,
    /// Set by every layer (file, environment, maybe a flag); false for a
    /// file-only list such as `[[external_auth]]`.
    pub(super) layered: bool,
    /// Its type is a [`super::Secret`]: the name must be one [`is_secret`] redacts.
    pub(super) secret: bool,
}

/// Every key, [`Config`]'s nested tables included, in declaration order.
pub(super) fn all_keys() -> Vec<Key> {
    let mut out = Vec::new();
    Config::keys("", &mut out);
    out
}

/// Every dotted key that the layers set, sorted (file-only lists left out).
pub(super) fn known_keys() -> Vec<String> {
    let mut keys: Vec<String> = all_keys()
        .into_iter()
        .filter(|k| k.layered)
        .map(|k| k.name)
        .collect();
    keys.sort();
    keys
}

/// File-only keys (`external_auth`): valid in the file, not as dotted keys.
pub(super) fn file_only_keys() -> Vec<String> {
    all_keys()
        .into_iter()
        .filter(|k| !k.layered)
        .map(|k| k.name)
        .collect()
}

/// A value before validation, from any layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Raw {
    Str(String),
    Int(i64),
    Bool(bool),
    /// A TOML array of strings (from the environment: one comma-separated string).
    List(Vec<String>),
    /// From a `PathBuf` flag; may not be UTF-8.
    Path(PathBuf),
}

impl Raw {
    /// The value as an error message shows it: [`REDACTED`] for secret keys.
    pub(super) fn shown(&self, key: &str) -> String {
        if is_secret(key) {
            return REDACTED.to_owned();
        }
        match self {
            Raw::Str(s) => format!("{s:?}"),
            Raw::Int(i) => i.to_string(),
            Raw::Bool(b) => b.to_string(),
            Raw::List(l) => format!("{l:?}"),
            Raw::Path(p) => format!("{:?}", p.display().to_string()),
        }
    }
}

/// A type a key may have in the file struct (`file: ...` in [`settings!`]).
pub(super) trait FileValue {
    fn to_raw(&self) -> Raw;
}

impl FileValue for String {
    fn to_raw(&self) -> Raw {
        Raw::Str(self.clone())
    }
}
impl FileValue for PathBuf {
    /// A path read from TOML is always UTF-8.
    fn to_raw(&self) -> Raw {
        Raw::Str(self.to_string_lossy().into_owned())
    }
}
impl FileValue for i64 {
    fn to_raw(&self) -> Raw {
        Raw::Int(*self)
    }
}
impl FileValue for bool {
    fn to_raw(&self) -> Raw {
        Raw::Bool(*self)
    }
}
impl FileValue for Vec<String> {
    fn to_raw(&self) -> Raw {
        Raw::List(self.clone())
    }
}

/// Merged layers: dotted key → highest-precedence raw value and its source.
pub(super) type Layered = BTreeMap<String, (Raw, Source)>;

/// One resolved key, for rendering.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub(super) key: String,
    /// Effective value (normalized), `Null` if unset.
    pub(super) value: serde_json::Value,
    pub(super) source: Source,
}

/// Validates the merged layers into a [`Config`] (its file-only lists left
/// empty), with every key's effective value and source in declaration order.
pub(super) fn resolve(layered: &Layered) -> Result<(Config, Vec<Entry>), ConfigError> {
    let mut r = Resolver {
        layered,
        entries: Vec::new(),
    };
    let config = Config::resolve(&mut r, "")?;
    Ok((config, r.entries))
}

/// Picks each key's value from the highest layer that sets it and records
/// where it came from.
pub(super) struct Resolver<'a> {
    layered: &'a Layered,
    entries: Vec<Entry>,
}

impl Resolver<'_> {
    /// The key's value from the highest layer that sets it, else `default`
    /// (parsed with the same parser, so defaults are validated too).
    pub(super) fn get<T: Render>(
        &mut self,
        key: &str,
        default: &str,
        parse: impl FnOnce(&Raw) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let fallback = (Raw::Str(default.to_owned()), Source::Default);
        let (raw, source) = self.layered.get(key).unwrap_or(&fallback);
        let value = parse(raw).map_err(|reason| invalid(key, raw, source, reason))?;
        self.record(key, &value, source.clone());
        Ok(value)
    }

    /// Like [`Resolver::get`], but the default is computed (e.g. from another key).
    pub(super) fn get_or<T: Render>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&Raw) -> Result<T, String>,
        default: impl FnOnce() -> T,
    ) -> Result<T, ConfigError> {
        let value = match self.layered.get(key) {
            Some((raw, source)) => {
                let value = parse(raw).map_err(|reason| invalid(key, raw, source, reason))?;
                self.record(key, &value, source.clone());
                value
            }
            None => {
                let value = default();
                self.record(key, &value, Source::Default);
                value
            }
        };
        Ok(value)
    }

    fn record<T: Render>(&mut self, key: &str, value: &T, source: Source) {
        self.entries.push(Entry {
            key: key.to_owned(),
            value: value.render(),
            source,
        });
    }
}

fn invalid(key: &str, raw: &Raw, source: &Source, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        origin: source.clone(),
        value: raw.shown(key),
        reason,
    }
}
