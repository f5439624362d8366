//! Small serde helpers for the protojson encoding rules.
//!
//! - 64-bit integers are written as JSON strings and read from either a string or a number.
//! - `bytes` fields are standard base64 (URL-safe accepted on input).
//! - `double` fields are JSON numbers, integral values without a fraction (`1`, not `1.0`), and
//!   the non-finite values the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
//! - Zero values are skipped on output through the `is_*` predicates.

use base64::Engine as _;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};
use std::fmt;

pub(crate) fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

pub(crate) fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

pub(crate) fn is_false(v: &bool) -> bool {
    !*v
}

/// Proto3's presence rule for `double`: only +0.0 is the default (`-0.0` is written).
pub(crate) fn is_zero_f64(v: &f64) -> bool {
    v.to_bits() == 0
}

/// `double` as protojson writes it: a JSON number (`1` for 1.0, `3.2`), or `"NaN"`,
/// `"Infinity"`, `"-Infinity"`; decoded from a number or any of those strings (and a number in
/// a string, which protojson also accepts).
pub(crate) mod f64_json {
    use super::*;

    /// Integral values below this are written without a fraction (they are exact in an f64).
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

    pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        let v = *v;
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if v > 0.0 { "Infinity" } else { "-Infinity" })
        } else if v.fract() == 0.0 && v.abs() < EXACT && !(v == 0.0 && v.is_sign_negative()) {
            // Exact: |v| < 2^53 and integral.
            s.serialize_i64(v as i64)
        } else {
            s.serialize_f64(v)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        d.deserialize_any(F64Visitor)
    }

    struct F64Visitor;

    impl Visitor<'_> for F64Visitor {
        type Value = f64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number, or \"NaN\", \"Infinity\" or \"-Infinity\"")
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            match v {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                _ => v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| E::custom(format!("{v:?} is not a number"))),
            }
        }
    }
}

/// `u64` as a JSON string, decoded from a string or a number.
pub(crate) mod u64_str {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(U64Visitor)
    }

    struct U64Visitor;

    impl Visitor<'_> for U64Visitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an unsigned 64-bit integer as a string or a number")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative")))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            v.parse::<u64>()
                .map_err(|_| E::custom(format!("{v:?} is not an unsigned 64-bit integer")))
        }
    }
}

/// `i64` as a JSON string, decoded from a string or a number.
pub(crate) mod i64_str {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        d.deserialize_any(I64Visitor)
    }

    struct I64Visitor;

    impl Visitor<'_> for I64Visitor {
        type Value = i64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a signed 64-bit integer as a string or a number")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("{v} does not fit in 64 signed bits")))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            v.parse::<i64>()
                .map_err(|_| E::custom(format!("{v:?} is not a signed 64-bit integer")))
        }
    }
}

/// `bytes` as standard base64 with padding; decoding also accepts URL-safe and unpadded input.
pub(crate) mod base64_bytes {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        decode(&text).map_err(de::Error::custom)
    }

    pub(crate) fn decode(text: &str) -> Result<Vec<u8>, String> {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            if let Ok(bytes) = engine.decode(text) {
                return Ok(bytes);
            }
        }
        Err(format!("{text:?} is not valid base64"))
    }
}

/// Serde wrapper used by hand-written (de)serializers for 64-bit values.
pub(crate) struct U64Str(pub(crate) u64);

impl serde::Serialize for U64Str {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        u64_str::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for U64Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64_str::deserialize(d).map(U64Str)
    }
}

pub(crate) struct I64Str(pub(crate) i64);

impl serde::Serialize for I64Str {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        i64_str::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for I64Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        i64_str::deserialize(d).map(I64Str)
    }
}

pub(crate) struct B64(pub(crate) Vec<u8>);

impl serde::Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        base64_bytes::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        base64_bytes::deserialize(d).map(B64)
    }
}
