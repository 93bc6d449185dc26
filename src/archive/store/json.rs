//! Just enough JSON for the answers of credential endpoints and programs:
//! one object whose string members are wanted; members of other types
//! (numbers, booleans, null, nested objects and arrays) are checked for
//! shape and skipped. Anything else is an error that names no content,
//! since these documents carry secrets. [`parse`] reads a whole document
//! into a [`Value`], for the JSON APIs whose answers nest (Google Cloud
//! Storage's listings and errors, OAuth token answers with numbers).

use std::collections::HashMap;

/// The string members of a JSON object. `Err` says what is wrong, by
/// position only.
// Only the AWS credential sources read these documents.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub fn string_members(text: &str) -> Result<HashMap<String, String>, String> {
    let mut p = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    p.space();
    let mut members = HashMap::new();
    p.expect(b'{')?;
    p.space();
    if p.peek() == Some(b'}') {
        p.at += 1;
    } else {
        loop {
            p.space();
            let key = p.string()?;
            p.space();
            p.expect(b':')?;
            p.space();
            if p.peek() == Some(b'"') {
                let value = p.string()?;
                members.insert(key, value);
            } else {
                p.skip_value(0)?;
            }
            p.space();
            match p.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(p.error("expected ',' or '}'")),
            }
        }
    }
    p.space();
    if p.at != p.bytes.len() {
        return Err(p.error("text after the object"));
    }
    Ok(members)
}

/// A JSON value. Numbers are kept as written (the caller says which kind
/// it wants); object members in document order.
// Only the Cloud Storage store reads whole documents.
#[cfg_attr(not(feature = "gcs"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

#[cfg_attr(not(feature = "gcs"), allow(dead_code))]
impl Value {
    /// The member `key` of an object (the first, if repeated).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A non-negative integer, written as a number or as a string of
    /// digits (Google's JSON APIs write 64-bit integers as strings).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) | Value::String(n) => n.parse().ok(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A whole JSON document. `Err` says what is wrong, by position only.
#[cfg_attr(not(feature = "gcs"), allow(dead_code))]
pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    p.space();
    let v = p.value(0)?;
    p.space();
    if p.at != p.bytes.len() {
        return Err(p.error("text after the value"));
    }
    Ok(v)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Nesting deeper than this is not a credentials document.
const MAX_DEPTH: usize = 32;

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("not the expected JSON: {what} at byte {}", self.at)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), String> {
        if self.next() == Some(want) {
            Ok(())
        } else {
            self.at = self.at.saturating_sub(1);
            Err(self.error(&format!("expected '{}'", want as char)))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.next() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => match self.next() {
                    Some(c @ (b'"' | b'\\' | b'/')) => out.push(c),
                    Some(b'b') => out.push(8),
                    Some(b'f') => out.push(12),
                    Some(b'n') => out.push(b'\n'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b't') => out.push(b'\t'),
                    Some(b'u') => {
                        let c = self.code_point()?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => return Err(self.error("bad escape")),
                },
                Some(c) if c < 0x20 => return Err(self.error("control character in a string")),
                Some(c) => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("string is not UTF-8"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.error("bad \\u escape"))?;
        self.at += 4;
        Ok(digits)
    }

    fn code_point(&mut self) -> Result<char, String> {
        let hi = self.hex4()?;
        let c = if (0xD800..0xDC00).contains(&hi) {
            if self.next() != Some(b'\\') || self.next() != Some(b'u') {
                return Err(self.error("lone surrogate"));
            }
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.error("lone surrogate"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(c).ok_or_else(|| self.error("bad \\u escape"))
    }

    fn skip_value(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.at += 1;
                self.space();
                if self.peek() == Some(close) {
                    self.at += 1;
                    return Ok(());
                }
                loop {
                    self.space();
                    if open == b'{' {
                        self.string()?;
                        self.space();
                        self.expect(b':')?;
                        self.space();
                    }
                    self.skip_value(depth + 1)?;
                    self.space();
                    match self.next() {
                        Some(b',') => continue,
                        Some(c) if c == close => return Ok(()),
                        _ => return Err(self.error("unterminated object or array")),
                    }
                }
            }
            Some(b't') => self.word("true"),
            Some(b'f') => self.word("false"),
            Some(b'n') => self.word("null"),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.at += 1;
                }
                std::str::from_utf8(&self.bytes[start..self.at])
                    .ok()
                    .and_then(|n| n.parse::<f64>().ok())
                    .map(drop)
                    .ok_or_else(|| self.error("bad number"))
            }
            _ => Err(self.error("expected a value")),
        }
    }

    #[cfg_attr(not(feature = "gcs"), allow(dead_code))]
    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            Some(b'"') => self.string().map(Value::String),
            Some(open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.at += 1;
                self.space();
                let mut members = Vec::new();
                let mut items = Vec::new();
                if self.peek() == Some(close) {
                    self.at += 1;
                } else {
                    loop {
                        self.space();
                        if open == b'{' {
                            let key = self.string()?;
                            self.space();
                            self.expect(b':')?;
                            self.space();
                            members.push((key, self.value(depth + 1)?));
                        } else {
                            items.push(self.value(depth + 1)?);
                        }
                        self.space();
                        match self.next() {
                            Some(b',') => continue,
                            Some(c) if c == close => break,
                            _ => return Err(self.error("unterminated object or array")),
                        }
                    }
                }
                Ok(if open == b'{' {
                    Value::Object(members)
                } else {
                    Value::Array(items)
                })
            }
            Some(b't') => self.word("true").map(|()| Value::Bool(true)),
            Some(b'f') => self.word("false").map(|()| Value::Bool(false)),
            Some(b'n') => self.word("null").map(|()| Value::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                self.skip_value(depth)?;
                Ok(Value::Number(
                    String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned(),
                ))
            }
            _ => Err(self.error("expected a value")),
        }
    }

    fn word(&mut self, w: &str) -> Result<(), String> {
        if self.bytes[self.at..].starts_with(w.as_bytes()) {
            self.at += w.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_members_and_errors() {
        let m = string_members(
            r#" {"Version": 1, "AccessKeyId":"AK\u0041\/x", "Nested": {"a": [1, true, null, "s"]},
                "Token": "t\"q", "Empty": ""} "#,
        )
        .unwrap();
        assert_eq!(m["AccessKeyId"], "AKA/x");
        assert_eq!(m["Token"], "t\"q");
        assert_eq!(m["Empty"], "");
        assert!(!m.contains_key("Version") && !m.contains_key("Nested"));
        assert_eq!(string_members("{}").unwrap().len(), 0);
        assert_eq!(
            string_members(r#"{"e":"\ud83d\ude00"}"#).unwrap()["e"],
            "😀"
        );
        for bad in [
            "",
            "[]",
            "{",
            r#"{"a":}"#,
            r#"{"a":"b",}"#,
            r#"{"a":"b"} x"#,
            r#"{"a":"b""#,
            r#"{"a":tru}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\ud800"}"#,
            "<html>not json</html>",
            r#"{"a":[1,2}"#,
            "{\"a\":\"line\nbreak\"}",
        ] {
            let e = string_members(bad).unwrap_err();
            assert!(e.starts_with("not the expected JSON"), "{bad:?}: {e}");
        }
        let deep = "{\"a\":".to_string() + &"[".repeat(100) + &"]".repeat(100) + "}";
        assert!(string_members(&deep).is_err());
    }

    #[test]
    fn whole_documents() {
        let v = parse(
            r#"{"items":[{"name":"a\u0041","size":"16"},{"name":"b","size":0}],
                "n":-1.5e3,"t":true,"f":false,"z":null,"e":{},"x":[]}"#,
        )
        .unwrap();
        let items = v.get("items").and_then(Value::as_array).unwrap();
        assert_eq!(items[0].get("name").and_then(Value::as_str), Some("aA"));
        assert_eq!(items[0].get("size").and_then(Value::as_u64), Some(16));
        assert_eq!(items[1].get("size").and_then(Value::as_u64), Some(0));
        assert_eq!(v.get("n"), Some(&Value::Number("-1.5e3".into())));
        assert_eq!(v.get("n").and_then(Value::as_u64), None);
        assert_eq!(v.get("t"), Some(&Value::Bool(true)));
        assert_eq!(v.get("z"), Some(&Value::Null));
        assert_eq!(v.get("e"), Some(&Value::Object(vec![])));
        assert_eq!(v.get("missing"), None);
        assert_eq!(parse(" 3 ").unwrap(), Value::Number("3".into()));
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "[1] 2", "<html>", "nul"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse(&deep).is_err());
    }
}
