//! JSON as Python's `json.dumps` writes it by default, for faces of Python originals whose
//! clients may compare bytes: `", "` between items, `": "` after keys, every character outside
//! printable ASCII as `\uXXXX` (DEL too; a surrogate pair above U+FFFF), and floats as
//! `repr(float)` does (`100.0`, `1e+16`, `1e-05`). Key order is the value's own (serde_json keeps insertion
//! order here, as a Python dict does).

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, Serializer};

/// `json.dumps(value)`.
pub fn dumps<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = Serializer::with_formatter(&mut out, PythonFormatter);
    value
        .serialize(&mut ser)
        .expect("serialising to memory does not fail");
    String::from_utf8(out).expect("the formatter writes ASCII")
}

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_f64<W: ?Sized + Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(w, f64::from(value))
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Python escapes everything outside the printable ASCII range, DEL (0x7F) too.
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        // Python writes the same short escapes as serde_json, and `\u00XX` for other controls.
        let s: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write!(w, "\\u{byte:04x}"),
        };
        w.write_all(s)
    }
}

/// `repr(x)` of a Python float: the shortest digits that read back as `x` (serde_json's own,
/// which break ties to even as CPython's dtoa does), in positional notation for
/// 1e-4 <= |x| < 1e16 (with `.0` when integral), else `d.ddde+XX`.
fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let text = serde_json::to_string(&x.abs()).expect("a finite float serialises");
    // `text` is `123.45`, `1e16`, `1.5e-7` or `0.0001`: split into digits and exponent.
    let (mantissa, e10) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (
            m,
            e.trim_start_matches('+')
                .parse::<i32>()
                .expect("an exponent"),
        ),
        None => (text.as_str(), 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_start_matches('0').trim_end_matches('0');
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if digits.is_empty() {
        return format!("{sign}0.0");
    }
    let exp = e10 + int.len() as i32 - 1 - lead as i32;
    let n = digits.len() as i32;
    let body = if (-4..16).contains(&exp) {
        if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else if exp + 1 >= n {
            format!("{digits}{}.0", "0".repeat((exp + 1 - n) as usize))
        } else {
            let (int, frac) = digits.split_at((exp + 1) as usize);
            format!("{int}.{frac}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{esign}{:02}", exp.abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_and_arrays_are_spaced_as_python_writes_them() {
        let v = json!({"beer": {"id": 0, "type": "pint", "list": [1, 2], "e": {}, "a": []}});
        assert_eq!(
            dumps(&v),
            r#"{"beer": {"id": 0, "type": "pint", "list": [1, 2], "e": {}, "a": []}}"#
        );
    }

    #[test]
    fn strings_escape_non_ascii_and_controls_as_python_does() {
        // json.dumps("é ☃ 😀 \x01 \x7f \" \\ / \n") in Python 3.
        let s = "é ☃ 😀 \u{1} \u{7f} \" \\ / \n";
        assert_eq!(
            dumps(&s),
            r#""\u00e9 \u2603 \ud83d\ude00 \u0001 \u007f \" \\ / \n""#
        );
    }

    #[test]
    fn floats_read_as_python_repr() {
        // Each right-hand side is Python 3's repr(float(left)).
        let cases = [
            (0.33, "0.33"),
            (100.0, "100.0"),
            (-2.5, "-2.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e20, "1.2345e+20"),
            (123456789.125, "123456789.125"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(x), want, "{x:e}");
        }
        assert_eq!(dumps(&json!({"volume": 0.5})), r#"{"volume": 0.5}"#);
    }
}
